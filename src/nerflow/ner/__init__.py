"""Token classification (NER): what differs from other task types lives here; the shared spine imports none of it."""
