"""A seeded, clearly SYNTHETIC English NER corpus (PER, ORG, LOC, PRODUCT) for the quickstart.

Sentences are filled-in templates; entity names are composed from word pools (first + last names, organisation stems
+ industry words + legal suffixes, place parts, product brands + model numbers). The pools are split per corpus
split, so no validation or test entity string occurs in train: the test score measures reading context and name
shape, and a model that memorises names gets caught. Same seed and sizes -> byte-identical files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path

VERSION = 1  # bump whenever the output for a given seed changes
FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
MANIFEST, README = "manifest.json", "README.txt"
Tokens = list[tuple[str, str]]  # (token, IOB2 tag)

FIRST = ("Maria James Aisha Chen Olga Pedro Fatima Lars Ingrid Kenji Amara Tomas Leila Rafael Sofia Dmitri Hana Omar "
         "Greta Mateo Yuki Nadia Felix Priya Hugo Elena Kwame Astrid Diego Mei Viktor Zara Anders Lucia Tariq Ines "
         "Bruno Keiko Samuel Freya Arjun Chiara Emeka Ilse Jonas Rosa Malik Svetlana Paulo Noor Henrik Beatriz Idris "
         "Carmen Oskar Yara Nikolai Leona Tobias Amina Florian Dalia Marco Signe Ravi Elif Anton Wanjiru Emil Lorena "
         "Kofi Selma").split()
LAST = ("Lopez Okafor Lindqvist Tanaka Moreau Novak Haddad Ferreira Kowalski Brennan Castillo Nakamura Petrov "
        "Oyelaran Schneider Vasquez Achterberg Delacroix Ramaswamy Kim Mensah Rossi Horvath Eriksen Quintero Baptiste "
        "Yilmaz Fontaine Ivanova Takahashi Mbeki Gallagher Sorensen Abernathy Morales Hoffmann Dubois Kaplan Nyberg "
        "Okonkwo Salazar Varga Whitfield Zhou Adeyemi Bergstrom Carvalho Dragomir Esposito Fitzgerald Gutierrez "
        "Halvorsen Ibarra Jovanovic Kruger Lambert Marchetti Nilsen Obradovic Pereira Quist Rahman Stavros Thorsen "
        "Urquhart Valente Wexler Yamamoto Zeller Aguilar Brandt Chatterjee").split()
ORG_STEM = ("Northwind Bluepeak Ardent Corvex Meridian Quantis Vantage Zentra Orbis Halcyon Brightwater Ironclad "
            "Redfern Silverline Keystone Larkspur Amberly Cobalt Pinnacle Trident Evergreen Granite Harbinger Solace "
            "Tessera Umbra Verdant Wyvern Axiom Beacon Crestview Dynamo Everline Foxglove Gemini Hollis Ingot Juniper "
            "Kestrel Lumina Nexus Obsidian Paragon Riverton Sable Tamarind Unison Valora Windmere Yarrow Alder "
            "Bramble Cinder Driftwood Ember Fable Marlowe Saffron").split()
BRAND = ("Vortex Nimbus Aurora Zephyr Titan Falcon Nova Pulse Echo Orion Photon Sonic Apex Lumen Quasar Atlas Comet "
         "Prism Raptor Strata Vega Xenon Kodiak Cirrus Tempo Nebula Mako Onyx Spectra Blaze Helios Javelin Kinetic "
         "Lynx Mistral Neutron Octave Pixel Ranger Sierra Talon Vertex Wraith Zodiac Fusion Glacier Horizon").split()
PLACE = sorted({root + end for root in ("Ash Brook Elm Oak Stone Mill Wolf Fair Glen Hart Kings Marl Thorn Wex Bel Cal "
                                       "Dun Hal Lan Mor Pen Rad Sel Tal Win Bram Cor Hol").split()
                for end in "ford haven wood field ton bury dale mouth ridge wick stead more worth cliffe".split()})
# Shared pieces: they occur in every split, but only next to a split-specific word, never alone as an entity.
ORG_KIND = "Trading Logistics Energy Foods Systems Media Capital Pharma Motors Textiles Analytics Shipping".split()
ORG_SUFFIX = "Company Corporation Inc. Ltd Group Holdings Partners".split()
PLACE_PREFIX, PLACE_SUFFIX = "New Port North South East West Lake Fort Mount".split(), "City Bay Falls Valley".split()
VARIANT = "Pro Max Mini Ultra Lite Plus Air".split()

# <A|B> is a slot filled with an entity of type A or B: some contexts do not decide the type on their own.
TEMPLATES = [t.split() for t in """\
<PER> said on Tuesday that <ORG> would open a new office in <LOC> .
<PER> , who works for <ORG> , was born in <LOC> .
<ORG> is based in <LOC> and employs about 400 people .
Last week <PER> bought a <PRODUCT> from a small shop in <LOC> .
The <PRODUCT> , made by <ORG> , goes on sale next month .
<ORG> announced a partnership with <ORG> on Monday .
According to <PER> , the <PRODUCT> sold out within hours .
In <LOC> , <PER> met executives from <ORG> to discuss the merger .
<PER|ORG> declined to comment on the report .
Shares of <ORG> rose 4 percent after the launch of the <PRODUCT> .
<PER> moved from <LOC> to <LOC> in 2019 .
Reviewers praised the battery life of the <PRODUCT> but criticised its price .
<ORG> has hired <PER> as its new chief financial officer .
The mayor of <LOC> , <PER> , opened the new bridge on Sunday .
Flights between <LOC> and <LOC> were cancelled because of the storm .
<PER> told reporters in <LOC> that the <PRODUCT> had been delayed .
A spokesperson for <PER|ORG> said the figures were wrong .
Engineers at <ORG> spent two years designing the <PRODUCT> .
My brother still uses an old <PRODUCT> that he bought in <LOC> .
<ORG> agreed to buy <ORG> for 2 billion dollars .
Thousands of fans gathered in <LOC> to see <PER> perform .
A report by <ORG> ranks <LOC> as the most expensive city in the region .
<PER> and <PER> founded <ORG> in a garage in <LOC> .
Police in <LOC> are looking for a stolen <PRODUCT> .
Dr. <PER> of <ORG> presented the results at a conference in <LOC> .
The <PRODUCT> is cheaper than the <PRODUCT> but has a smaller screen .
Residents of <LOC> complained about the noise from the <ORG> factory .
<PER> upgraded to the <PRODUCT> after the old one broke .
<ORG> will recall 20,000 units of the <PRODUCT> , the company said .
Visitors to <LOC> can now rent a <PRODUCT> at the station .
After leaving <ORG> , <PER> started a consulting firm in <LOC> .
<PER> visited <LOC|ORG> twice last year .
The <ORG> team won the regional final in <LOC> on Saturday .
Critics say <PER> spent too much time promoting the <PRODUCT> .
Both <ORG> and <ORG> have offices near the harbour in <LOC> .
<LOC> will host the summit , <PER> confirmed in a statement .
Sales of the <PRODUCT> in <LOC> doubled , according to <ORG> .
Mr. <PER> denied that he had ever worked for <ORG> .
We drove from <LOC> to the coast in a rented <PRODUCT> .
Is the <PRODUCT> really worth the money , asks <PER> ?
<PER|ORG> donated 50,000 dollars to a hospital in <LOC> .
Interviewed in <LOC> , <PER> said that <PER> deserved the award .
The meeting was postponed until next week because of the weather .
Prices for fresh vegetables rose sharply in the last three months .
Nobody expected the final to go to extra time , the coach said .
The company said it would publish its annual results in March .
Officials said the new road would be finished before the end of the year .
Most of the passengers were asleep when the train finally arrived .""".splitlines()]
CONNECTORS = [[",", "and"], [";", "meanwhile", ","], [",", "while"], [";", "separately", ","]]


def _check_pools_disjoint() -> None:
    seen: dict[str, str] = {}
    for kind, words in {"FIRST": FIRST, "LAST": LAST, "ORG_STEM": ORG_STEM, "BRAND": BRAND, "PLACE": PLACE}.items():
        for w in words:
            if seen.setdefault(w.lower(), kind) != kind or words.count(w) > 1:
                raise AssertionError(f"pool word {w!r} occurs twice ({seen[w.lower()]}, {kind})")


def _split_pools(seed: int) -> dict[str, dict[str, list[str]]]:
    """Each split-specific pool shuffled and cut 60/20/20 into train/validation/test: disjoint by construction."""
    rng, pools = random.Random(f"nerflow-synthetic:{seed}:pools"), {s: {} for s in FILES}
    for kind, words in {"first": FIRST, "last": LAST, "org": ORG_STEM, "brand": BRAND, "place": PLACE}.items():
        words = list(words)
        rng.shuffle(words)
        a, b = int(len(words) * 0.6), int(len(words) * 0.8)
        for split, part in zip(FILES, (words[:a], words[a:b], words[b:])):
            pools[split][kind] = part
    return pools


def _entity(etype: str, p: dict[str, list[str]], rng: random.Random) -> list[str]:
    r = rng.random()
    if etype == "PER":
        first, last = rng.choice(p["first"]), rng.choice(p["last"])
        return [[first, last], [last], [first, rng.choice("ABCDEHJKLMPRST") + ".", last],
                [first, f"{rng.choice(p['last'])}-{last}"]][(r > .6) + (r > .8) + (r > .92)]
    if etype == "LOC":
        core = rng.choice(p["place"])
        return [[core], [rng.choice(PLACE_PREFIX), core], [core, rng.choice(PLACE_SUFFIX)]][(r > .45) + (r > .75)]
    if etype == "ORG":
        stem, kind, suffix = rng.choice(p["org"]), rng.choice(ORG_KIND), rng.choice(ORG_SUFFIX)
        if r > .88:
            return [rng.choice(["University", "Bank"]), "of", rng.choice(p["place"])]
        return [[stem], [stem, suffix], [stem, kind, suffix], [stem, kind]][(r > .2) + (r > .5) + (r > .75)]
    brand, variant = rng.choice(p["brand"]), rng.choice(VARIANT)
    model = [f"{rng.randint(1, 9)}000", f"{rng.choice('SXZ')}{rng.randint(2, 12)}",
             f"{rng.randint(10, 99)}0"][rng.randrange(3)]  # Vortex 3000, Nimbus X2, Aurora 450
    return [[brand, model], [brand, model, variant], [brand, variant]][(r > .45) + (r > .7)]


def _fill(template: list[str], p: dict[str, list[str]], rng: random.Random) -> Tokens:
    out: Tokens = []
    for word in template:
        if word.startswith("<"):
            etype = rng.choice(word[1:-1].split("|"))
            out += [(tok, f"{'I' if i else 'B'}-{etype}") for i, tok in enumerate(_entity(etype, p, rng))]
        else:
            out.append((word, "O"))
    return out


def _sentence(p: dict[str, list[str]], rng: random.Random, long_rate: float = 0.05) -> Tokens:
    """8-25 tokens; about 1 in 20 joins several clauses into 40-60 tokens (exercises windowing of long inputs)."""
    while True:
        sent = _fill(rng.choice(TEMPLATES), p, rng)
        if 8 <= len(sent) <= 25:
            break
    if rng.random() >= long_rate:
        return sent
    while len(sent) < 40:
        nxt = _fill(rng.choice(TEMPLATES), p, rng)
        if nxt[0][1] == "O":
            nxt[0] = (nxt[0][0].lower(), "O")
        sent = sent[:-1] + [(w, "O") for w in rng.choice(CONNECTORS)] + nxt
    return sent if len(sent) <= 60 else _sentence(p, rng, long_rate=1.0)


def _entity_strings(docs: list[list[Tokens]]) -> set[str]:
    from nerflow.ner.schemes import entity_spans
    return {" ".join(tok for tok, _ in s[a:b]).lower()
            for doc in docs for s in doc for _, a, b in entity_spans([t for _, t in s])}


def build_corpus(seed: int, sizes: dict[str, int]) -> dict[str, list[list[Tokens]]]:
    """split -> documents (8-12 sentences each) -> sentences of (token, tag)."""
    _check_pools_disjoint()
    pools, corpus = _split_pools(seed), {}
    for split in FILES:
        rng, docs, left = random.Random(f"nerflow-synthetic:{seed}:{split}"), [], sizes[split]
        while left > 0:
            n = min(left, rng.randint(8, 12))
            docs.append([_sentence(pools[split], rng) for _ in range(n)])
            left -= n
        corpus[split] = docs
    train = _entity_strings(corpus["train"])
    for split in ("validation", "test"):
        leaked = sorted(_entity_strings(corpus[split]) & train)
        if leaked:
            raise AssertionError(f"{split} entity strings also occur in train: {leaked[:5]}")
    return corpus


def _conll(docs: list[list[Tokens]]) -> str:
    return "".join("-DOCSTART- O\n\n" + "".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in doc)
                   for doc in docs)


def _readme(seed: int, sizes: dict[str, int], corpus: dict[str, list[list[Tokens]]]) -> str:
    stats = []
    for split, docs in corpus.items():
        sents = [s for d in docs for s in d]
        n_ent = sum(t.startswith("B-") for s in sents for _, t in s)
        stats.append(f"  {FILES[split]:<10} {len(sents):>5} sentences {sum(map(len, sents)):>6} tokens "
                     f"{n_ent:>5} entities {len(docs):>4} documents")
    return f"""SYNTHETIC NER CORPUS -- generated text, not real data. Do not use it to judge a model on real text.

Generated by nerflow.ner.synthetic (generator version {VERSION}) with seed={seed}, sizes={sizes}.
Regenerate: python -m nerflow.ner.synthetic DIR --seed {seed} --n-train {sizes['train']} \
--n-validation {sizes['validation']} --n-test {sizes['test']}

Entity types: PER, ORG, LOC, PRODUCT (IOB2 tags). {len(TEMPLATES)} English sentence templates are filled with names
composed from word pools (first + last names; organisation stems + industry words + legal suffixes; place parts;
product brands + model numbers). The pools are split per corpus split, so no validation or test entity string
occurs in train: the scores measure generalisation to unseen names, not memorisation. Any resemblance to real
people, companies, places or products is coincidental.

Format: `token TAG` per line, a blank line after each sentence, `-DOCSTART- O` before each document.
{chr(10).join(stats)}
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_complete(out_dir: Path, params: dict) -> bool:
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        return ({k: manifest.get(k) for k in params} == params
                and all(_sha256(out_dir / name) == digest for name, digest in manifest["sha256"].items()))
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def generate_corpus(out_dir: Path, seed: int = 0, n_train: int = 600, n_validation: int = 150,
                    n_test: int = 150) -> dict[str, Path]:
    """Write train/valid/test.txt + README.txt + manifest.json into `out_dir` (atomically); returns split -> path.

    A no-op when `out_dir` already holds a complete corpus of the same seed and sizes (checked by the manifest).
    """
    out_dir, sizes = Path(out_dir), {"train": n_train, "validation": n_validation, "test": n_test}
    if min(sizes.values()) < 1:
        raise ValueError(f"every split needs at least one sentence, got {sizes}")
    paths = {split: out_dir / name for split, name in FILES.items()}
    params = {"generator": "nerflow.ner.synthetic", "version": VERSION, "seed": seed, "sizes": sizes}
    if _is_complete(out_dir, params):
        return paths
    ours = {*FILES.values(), README, MANIFEST}
    if out_dir.exists() and not {p.name for p in out_dir.iterdir()} <= ours:
        raise FileExistsError(f"{out_dir}: exists and holds files other than a synthetic corpus; not replacing it")
    corpus = build_corpus(seed, sizes)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
    try:
        tmp.chmod(0o755)
        texts = {FILES[s]: _conll(corpus[s]) for s in FILES} | {README: _readme(seed, sizes, corpus)}
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8", newline="\n")
        digests = {name: _sha256(tmp / name) for name in texts}
        (tmp / MANIFEST).write_text(json.dumps(params | {"sha256": digests}, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            out_dir.rename(old)  # a stale or partial corpus of ours: moved aside, deleted below
        try:
            tmp.rename(out_dir)
        except OSError:  # another process finished first
            if not _is_complete(out_dir, params):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m nerflow.ner.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-validation", type=int, default=150)
    parser.add_argument("--n-test", type=int, default=150)
    a = parser.parse_args()
    paths = generate_corpus(a.out_dir, a.seed, a.n_train, a.n_validation, a.n_test)
    print(f"synthetic corpus (seed {a.seed}) in {a.out_dir}: " + ", ".join(p.name for p in paths.values()))


if __name__ == "__main__":
    main()
