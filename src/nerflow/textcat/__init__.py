"""Text classification (single- and multi-label, long documents): what differs from other task types lives here."""
