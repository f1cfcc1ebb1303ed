"""Which videos, with what labels, split how: label files, dataset indexes and content splits.

Every source of labels becomes a list of item dicts {path, mos, source, ...}: load_csv() for any
CSV list, waterloo4k_index() (its scores.txt or the widely shared CSV) and bvihd_index() for the
two datasets of the InternVQA paper (arXiv 2502.19026; layouts in docs/reference.md, section 4),
kvq_index() for KVQ (the NTIRE short-form video challenges' set, on which the authors' one released
weight was trained), with read_rank_pairs() for the challenge's score (section 9).
label_range() gives the scale that training maps to [0, 1]. official_split() holds out the
authors' fixed test contents, split_by_source() a seeded random share of the contents:
synthetic-distortion sets are split by source, never by video. Videos nobody rated:
load_unlabeled() (a list; mos NaN; test videos and sources refused) and hide_labels() (a label
budget of N contents). read_split() and split_unlabeled() take train.py's options (--data,
--split, --unlabeled, --labelled-sources...). Every problem in a label file is an error naming
file and line.

    items = load_csv("data/list.csv")            # header path,mos[,source,...]
    train_items, test_items = split_by_source(items, test_fraction=0.25, seed=0)
    items = waterloo4k_index("Waterloo4K", "Waterloo4K/waterloo4k.csv")  # or scores.txt by default
    train_items, test_items = official_split(items, "waterloo4k")      # test = sources 1-4
    items = kvq_index("KVQ")         # its train_ and val_split_v4_revise66_compete.txt: labels 1..5

Needs only numpy (and openpyxl for read_rank_pairs, imported there).
"""
import csv
import hashlib
import math
import os
import re

import numpy as np

# -----------------------------------------------------------------------------
# label files and dataset indexes -> lists of items {path, mos, source, ...}


def _score(text, where):
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where}: score {text!r} is not a finite number")
    return value


def load_csv(path, labelled=True):
    """Items of a CSV list with header `path,mos` and optional `source` plus any other columns.
    labelled=False: a list of videos without labels (header `path`; a `mos` column is ignored),
    each item's mos NaN (see load_unlabeled).

    Relative paths resolve against the CSV's folder (stored absolute); mos becomes a float and the
    other columns stay strings (width, height, bit_depth, fps describe raw .yuv files). Without a
    `source` column every video is its own content (the file stem), so splits are then by video:
    give `source` for synthetic-distortion sets, where one content has many distorted versions.
    """
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet may write a BOM
        reader = csv.DictReader(f)
        missing = {"path", "mos"} - set(reader.fieldnames or []) - (set() if labelled
                                                                     else {"mos"})
        if missing:
            raise ValueError(f"{path}, line 1: header {reader.fieldnames} lacks {sorted(missing)}")
        items, seen = [], {}
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if is_blank(row):
                continue
            if None in row:
                raise ValueError(f"{where}: more fields than the header has columns")
            name = (row["path"] or "").strip()
            if not name:
                raise ValueError(f"{where}: empty path")
            video = os.path.normpath(os.path.join(folder, name))
            if video in seen:
                raise ValueError(f"{where}: duplicated path {name!r} (first on line {seen[video]})")
            seen[video] = reader.line_num
            mos = _score(row["mos"], where) if labelled else math.nan
            if not os.path.isfile(video):
                raise FileNotFoundError(f"{where}: {video} does not exist")
            source = (row.get("source") or "").strip() or \
                os.path.splitext(os.path.basename(video))[0]
            extra = {k: v or "" for k, v in row.items() if k not in ("path", "mos", "source")}
            items.append(dict(path=video, mos=mos, source=source, **extra))
    if not items:
        raise ValueError(f"{path}: no videos listed")
    return items


def is_blank(row):
    """A csv.DictReader row with nothing in it: the blank rows a spreadsheet leaves (`,,,`)."""
    fields = [v for k, v in row.items() if k is not None] + (row.get(None) or [])
    return not any((v or "").strip() for v in fields)


def load_unlabeled(path, test_items=()):
    """Items of a list of videos nobody rated (`path`, optional `source`; a `mos` column is
    ignored), mos NaN. A video or a source of the test split in it is refused: the teacher's
    scores on test videos would leak them into training."""
    items = load_csv(path, labelled=False)
    test_paths = {os.path.realpath(it["path"]) for it in test_items}
    test_sources = {str(it["source"]).lower() for it in test_items}  # in any case
    for it in items:
        if os.path.realpath(it["path"]) in test_paths or str(it["source"]).lower() in test_sources:
            raise ValueError(f"{path}: {it['path']} (source {it['source']!r}) is a video or a "
                             f"source of the test split: training on it, even unlabeled, "
                             f"leaks the test set")
    return items


def split_unlabeled(args, train_items, test_items):
    """(labelled, unlabeled) training items of train.py's --labelled-sources (the other training
    contents lose their labels), --unlabeled (checked against test_items) and --w-unlabeled (0:
    no unlabeled videos)."""
    unlabeled = []
    if args.labelled_sources:
        train_items, unlabeled = hide_labels(train_items, args.labelled_sources, args.split_seed)
    if args.unlabeled:
        unlabeled += load_unlabeled(args.unlabeled, test_items)
    return train_items, unlabeled if args.w_unlabeled else []


def digest(items):
    """A short hash of items' paths and labels, in order: what --resume checks is unchanged (an
    edited list would change the order of every epoch's clips, the unlabeled ones too)."""
    text = "".join(f"{it['path']}\t{it['mos']!r}\n" for it in items)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def hide_labels(train_items, n_sources, seed=0):
    """(labelled, unlabeled): the labels of n_sources training contents (a seeded draw) kept, the
    other contents' videos returned with mos NaN, for a label budget of n_sources contents."""
    sources = sorted({str(it["source"]) for it in train_items})
    if not 1 <= n_sources <= len(sources):
        raise ValueError(f"a label budget of {n_sources} contents: the training split has "
                         f"{len(sources)}")
    kept = set(np.random.default_rng(seed).permutation(sources)[:n_sources].tolist())
    return ([it for it in train_items if str(it["source"]) in kept],
            [dict(it, mos=math.nan) for it in train_items if str(it["source"]) not in kept])


def _rows(path):
    """(line number, fields) of a label file: fields split by commas, semicolons or whitespace;
    blank lines and lines starting with '#' skipped."""
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            fields = [s for s in re.split(r"[,;\s]+", line.strip()) if s]
            if fields and not fields[0].startswith("#"):
                yield n, fields


def _is_number(text):
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# the shared CSV's header, lower case without spaces; also scores.txt's column order
WATERLOO_COLUMNS = ("encoder", "videonumber", "resolution", "distortionlevel", "mos")
WATERLOO_RESOLUTIONS = {"540": "960x540", "1080": "1920x1080", "2160": "3840x2160"}


def _waterloo_rows(labels):
    """(line number, {column: text}) of a Waterloo IVC 4K label file, keyed by WATERLOO_COLUMNS
    and maybe "path": scores.txt has those five columns in that order and no header; the shared
    CSV names them in a header row (any order and case, spaces ignored; other columns dropped)."""
    with open(labels, encoding="utf-8-sig") as f:
        first = f.readline().strip()
    if not first or first.startswith("#") or _is_number(re.split(r"[,;\s]+", first)[-1]):
        for n, fields in _rows(labels):  # scores.txt: no header, the MOS last
            if len(fields) != 5:
                raise ValueError(f"{labels}, line {n}: expected encoder, video, resolution, "
                                 f"level, MOS; got {fields}")
            yield n, dict(zip(WATERLOO_COLUMNS, fields))
        return
    with open(labels, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        names = ["".join(s.lower().split()) for s in header]
        missing = [c for c in WATERLOO_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"{labels}, line 1: header {header} lacks {missing}; expected five "
                             f"columns without header, or a CSV header "
                             f"Encoder,Video Number,Resolution,Distortion Level,MOS[,path]")
        for row in reader:
            if not any(s.strip() for s in row):
                continue
            if len(row) != len(names):
                raise ValueError(f"{labels}, line {reader.line_num}: {len(row)} fields, "
                                 f"the header has {len(names)}")
            keep = (*WATERLOO_COLUMNS, "path")
            yield reader.line_num, {k: s.strip() for k, s in zip(names, row) if k in keep}


def waterloo4k_index(root, labels=None):
    """Waterloo IVC 4K: videos `<root>/<Encoder>/<NN>/<W>x<H>_<level>.mp4`, labels in either form:
    - `scores.txt` (the default), five columns without header: encoder, video number, resolution,
      level, MOS (0-100, higher is better);
    - the widely shared CSV with header `Encoder,Video Number,Resolution,Distortion Level,MOS,path`,
      columns found by name. Its path carries a machine-specific prefix: its last three components
      are taken under `root`, and must agree with the other columns.
    Resolutions may be written WxH or 540/1080/2160[p]; encoder folders are matched in any case.
    source = the video number ("1".."20"); codec, level, resolution (WxH) are kept as columns.
    """
    root = os.path.abspath(root)
    labels = str(labels or os.path.join(root, "scores.txt"))
    folders = {d.lower(): d for d in os.listdir(root)}  # encoder names in any case
    items, seen = [], {}
    for n, row in _waterloo_rows(labels):
        where = f"{labels}, line {n}"
        codec, video, level = row["encoder"], row["videonumber"], row["distortionlevel"]
        if not (video.isdigit() and level.isdigit()):
            raise ValueError(f"{where}: video number and level must be integers, "
                             f"got {video!r}, {level!r}")
        res = row["resolution"].lower()
        res = WATERLOO_RESOLUTIONS.get(res.rstrip("p"), res)
        parts = [codec, f"{int(video):02d}", f"{res}_{int(level)}.mp4"]
        if row.get("path"):
            given = re.split(r"[\\/]+", row["path"])[-3:]  # a Windows prefix too
            if [s.lower() for s in given] != [s.lower() for s in parts]:
                raise ValueError(f"{where}: path {row['path']!r} does not end in "
                                 f"{'/'.join(parts)}, as its other columns say")
            parts = given
        path = os.path.join(root, folders.get(parts[0].lower(), parts[0]), *parts[1:])
        if path in seen:
            raise ValueError(f"{where}: {'/'.join(parts)} again (first on line {seen[path]})")
        seen[path] = n
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: {path} does not exist")
        items.append(dict(path=path, mos=_score(row["mos"], where), source=str(int(video)),
                          codec=codec, level=str(int(level)), resolution=res))
    if not items:
        raise ValueError(f"{labels}: no videos listed")
    return items


def bvihd_index(root, labels, *, bit_depth, fps, width=1920, height=1080):
    """BVI-HD: raw 4:2:0 .yuv files anywhere under `root` plus a label file.

    The label file's layout is not fixed publicly, so it is read liberally: one video per line,
    fields split by commas, semicolons or spaces; the first non-numeric field is the file name
    (.yuv optional, folders ignored); the DMOS is the column a header line names `*dmos*`, else
    the last number on the line; a line starting with '#' is a comment. DMOS (lower is better)
    becomes mos = 100 - DMOS (the authors trained on DMOS / 100; correlations only change sign).
    source = the file name up to its first `_`. bit_depth and fps: from the dataset's
    instructions file, never assumed (docs/reference.md, section 4).
    """
    root = os.path.abspath(root)
    files = {}
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if name.lower().endswith(".yuv"):
                files.setdefault(name.lower(), os.path.join(folder, name))
    items, column = [], None
    for n, fields in _rows(labels):
        where = f"{labels}, line {n}"
        numbers = [s for s in fields if _is_number(s)]
        if not numbers and not items:  # a header: remember which column holds the DMOS
            column = next((i for i, s in enumerate(fields) if "dmos" in s.lower()), None)
            continue
        names = [s for s in fields if not _is_number(s)]
        if not names or not numbers:
            raise ValueError(f"{where}: expected a file name and a DMOS, got {fields}")
        name = os.path.basename(names[0])
        name = name if name.lower().endswith(".yuv") else name + ".yuv"
        if name.lower() not in files:
            raise FileNotFoundError(f"{where}: no file {name} under {root}")
        dmos = fields[column] if column is not None and column < len(fields) else numbers[-1]
        items.append(dict(path=files[name.lower()], mos=100.0 - _score(dmos, where),
                          source=name.split("_")[0], dmos=dmos, width=str(width),
                          height=str(height), bit_depth=str(bit_depth), fps=str(fps)))
    return items


KVQ_SPLITS = {s: f"{s}_split_v4_revise66_compete.txt" for s in ("train", "val", "test")}
KVQ_PAIRS = "rank-pair-val.xlsx"  # the challenge's rank pairs of the val videos


def read_kvq_split(path, root=None, labels=True):
    """Items of one KVQ split file (docs/reference.md, section 9): no header, one video a line
    `filename,cls_label,dis_label,label`, the filename relative to `root` (not given: the split
    file's folder). mos = label (1..5, higher is better); source = cls_label, the class column the
    files give (they name no original upload, so splits by source are by that class); name = the
    filename as the file spells it, the key of the challenge's truth.csv and prediction.csv.
    labels=False (the test split, whose labels are not public): only the filename is read, and
    mos is nan."""
    path = str(path)
    root = os.path.abspath(root or os.path.dirname(os.path.abspath(path)))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: KVQ split file not found (expected one of "
                                f"{', '.join(KVQ_SPLITS.values())})")
    items, seen = [], {}
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {n}"
            fields = [s.strip() for s in line.split(",")]
            if (labels and len(fields) != 4) or not fields[0]:
                raise ValueError(f"{where}: expected filename,cls_label,dis_label,label; got "
                                 f"{line.strip()!r}")
            name = fields[0]
            if name in seen:
                raise ValueError(f"{where}: {name} again (first on line {seen[name]})")
            seen[name] = n
            mos = _score(fields[3], where) if labels else math.nan
            if labels and not 1 <= mos <= 5:
                raise ValueError(f"{where}: label {fields[3]} outside KVQ's 1..5")
            video = os.path.normpath(os.path.join(root, name))
            if not os.path.isfile(video):
                raise FileNotFoundError(f"{where}: {video} does not exist")
            cls, dis = (fields + ["", "", ""])[1:3]
            items.append(dict(path=video, mos=mos, source=cls, name=name, cls_label=cls,
                              dis_label=dis))
    if not items:
        raise ValueError(f"{path}: no videos listed")
    return items


def kvq_index(root, splits=("train", "val")):
    """KVQ (Lu et al. 2024; the NTIRE 2024 and 2025 short-form UGC VQA challenges): the labelled
    split files found by name in `root` (KVQ_SPLITS), every item with its `split` column
    (official_split trains on train and evaluates on val)."""
    items = []
    for split in splits:
        items += [dict(it, split=split)
                  for it in read_kvq_split(os.path.join(root, KVQ_SPLITS[split]), root)]
    return items


def read_rank_pairs(path):
    """The challenge's rank pairs, {"source": [(name1, name2, better)], "nonsource": [...]}, from
    rank-pair-val.xlsx: sheets `source` and `nonsource`, a header row, then name1, name2 and better
    (1 or 2: the better video of the two) in the first three columns, read by position as the
    challenge's metric_score.py does. Needs openpyxl (an optional extra, like matplotlib)."""
    try:
        import openpyxl
    except ImportError:
        raise ImportError(f"reading {path} needs openpyxl: pip install openpyxl") from None
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        pairs = {}
        for sheet in ("source", "nonsource"):
            if sheet not in book.sheetnames:
                raise ValueError(f"{path}: no sheet {sheet!r} (it has {book.sheetnames})")
            pairs[sheet] = []
            for n, row in enumerate(book[sheet].iter_rows(values_only=True), 1):
                row = [v for v in row[:3] if v is not None and str(v).strip()]
                if n == 1 or not row:  # the header; a blank row
                    continue
                better = str(row[-1]).strip()
                if len(row) != 3 or better not in ("1", "2", "1.0", "2.0"):
                    raise ValueError(f"{path}, sheet {sheet}, row {n}: expected name1, name2, "
                                     f"better (1 or 2); got {row}")
                pairs[sheet].append((str(row[0]).strip(), str(row[1]).strip(), int(float(better))))
            if not pairs[sheet]:
                raise ValueError(f"{path}, sheet {sheet}: no pairs")
    finally:
        book.close()
    return pairs


def kvq_pairs(root):
    """read_rank_pairs of the challenge's pairs file in the KVQ folder `root`; None where it has
    none (the score is then not computed)."""
    path = os.path.join(root, KVQ_PAIRS)
    return read_rank_pairs(path) if os.path.isfile(path) else None


NOMINAL_RANGE = {"bvihd": (0.0, 100.0), "waterloo4k": (0.0, 100.0), "toy": (0.0, 100.0),
                 "kvq": (1.0, 5.0)}


def label_range(dataset, items=None):
    """(lo, hi) of a dataset's labels: nominal for the known ones, else min and max of `items`
    (pass the training items). Training targets are (mos - lo) / (hi - lo)."""
    if dataset in NOMINAL_RANGE:
        return NOMINAL_RANGE[dataset]
    mos = [item["mos"] for item in items or []]
    if not mos or min(mos) == max(mos):
        raise ValueError(f"cannot infer a label range for {dataset!r} from {len(mos)} items "
                         f"with scores {sorted(set(mos))[:5]}")
    return (min(mos), max(mos))


# -----------------------------------------------------------------------------
# splits by source content: the same content never lands on both sides

OFFICIAL_TEST_SOURCES = {  # the authors' fixed test contents: docs/reference.md, section 3
    "bvihd": ("BallUnderWater", "Bookcase", "BricksLeaves", "Music", "PlasmaSlowRandom",
              "TreeGrassFamily"),
    "waterloo4k": ("1", "2", "3", "4"),
}


def official_split(items, dataset):
    """(train_items, test_items) with the InternVQA authors' fixed test sources; for the toy set and
    a CSV list, their own `split` column of train/test (the toy set's: every 4th content, the ones
    toy.make_held_out encodes with VVC; a list may be all train, evaluated with --test-labels);
    for KVQ, the challenge's train and val files."""
    if dataset in ("toy", "csv"):
        bad = [it["path"] for it in items if it.get("split") not in ("train", "test")]
        if bad:
            raise ValueError(f"{dataset} split: {len(bad)} items have no 'split' column of "
                             f"train/test, e.g. {bad[0]}" + ("; or use --split random"
                                                            if dataset == "csv" else ""))
        return ([it for it in items if it["split"] == "train"],
                [it for it in items if it["split"] == "test"])
    if dataset == "kvq":  # the challenge's own files: train on train, evaluate on val
        return ([it for it in items if it["split"] == "train"],
                [it for it in items if it["split"] == "val"])
    if dataset not in OFFICIAL_TEST_SOURCES:
        raise ValueError(f"no official split for {dataset!r} "
                         f"(known: {sorted(OFFICIAL_TEST_SOURCES)}); use split_by_source")
    test = {s.lower() for s in OFFICIAL_TEST_SOURCES[dataset]}
    train_items = [it for it in items if str(it["source"]).lower() not in test]
    test_items = [it for it in items if str(it["source"]).lower() in test]
    if not train_items or not test_items:
        found = sorted({str(it["source"]) for it in items})
        raise ValueError(f"official {dataset} split gave {len(train_items)} train and "
                         f"{len(test_items)} test items; test sources "
                         f"{OFFICIAL_TEST_SOURCES[dataset]}, found sources {found[:12]}")
    return train_items, test_items


def split_by_source(items, test_fraction=0.25, seed=0):
    """(train_items, test_items): a seeded random `test_fraction` of the sources (at least one
    source on each side) goes to test; items keep their order."""
    sources = sorted({it["source"] for it in items})
    if len(sources) < 2:
        raise ValueError(f"a content split needs at least 2 sources, got {sources}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = min(len(sources) - 1, max(1, round(len(sources) * test_fraction)))
    test = set(np.random.default_rng(seed).permutation(sources)[:n_test].tolist())
    return ([it for it in items if it["source"] not in test],
            [it for it in items if it["source"] in test])


# -----------------------------------------------------------------------------
# train.py's data: the items its options name


def read_split(args, toy_csv=None):
    """(train items, test items, the split's own test items) of train.py's --data (toy: the toy
    set's list, toy_csv), --split and --test-labels (then the test items are its, less the
    sources and files seen in training)."""
    if args.data == "toy":
        items = load_csv(toy_csv)
    elif args.data == "csv":
        items = load_csv(args.labels)
    elif args.data == "waterloo4k":
        items = waterloo4k_index(args.data_root, args.labels)
    elif args.data == "kvq":
        items = kvq_index(args.data_root)
    else:
        items = bvihd_index(args.data_root, args.labels, fps=args.yuv_fps,
                            bit_depth=args.yuv_bit_depth)
    if args.split == "official":
        train_items, test_items = official_split(items, args.data)
    else:
        train_items, test_items = split_by_source(items, args.test_fraction, args.split_seed)
    split_test = test_items
    if args.test_labels:  # a test video whose source or file trains is left out
        seen = {str(it["source"]).lower() for it in train_items}  # in any case
        files = {os.path.realpath(it["path"]) for it in train_items}
        test_items = [it for it in load_csv(args.test_labels) if str(it["source"]).lower()
                      not in seen and os.path.realpath(it["path"]) not in files]
    if len(test_items) < 4 or not train_items:
        fix = "other --test-labels" if args.test_labels else \
            "more sources, or another --test-fraction"
        raise ValueError(f"the split leaves {len(train_items)} train and {len(test_items)} test "
                         f"videos: metrics need at least 4 test videos ({fix})")
    return train_items, test_items, split_test
