"""The toy set and the pre-training corpus: compressed-video quality sets made from nothing but the
bundled ffmpeg.

What: synthetic contents from ffmpeg's lavfi generators (fractals, cellular automata, noise
textures, pans and zooms), each encoded by the five Waterloo IVC 4K encoders (H.264, HEVC, VP9,
AVS2, AV1) at 4 quality levels, level 1 the worst as in Waterloo, and labelled with VMAF
against the lossless source (0-100, higher is better). The test contents encoded with VVC
(make_held_out, built only when asked) make a held-out codec for cross-codec tests. The labels
are VMAF, not human opinion scores.
The same build turns your own source videos into such a set (`sources=`).

Why: so that a new user with no data (and the tests) can run the whole pipeline in minutes.
A model must learn "how much detail did compression destroy relative to this content", so
what matters is variety of texture scale, contrast, colour and motion across contents.

Use:
    csv = make_toy_dataset("data/toy")                  # ~1.3 min on 2 cores, cached afterwards
    vvc = make_held_out("data/toy")  # data/toy/held_out/toy_vvc.csv: its test contents in VVC
    csv = make_toy_dataset("data/toy_tiny", tiny=True)  # a few seconds, for tests
    csv = make_toy_dataset("data/mine", sources="videos/")  # your own videos, see below
    csv = make_corpus("data/corpus")                    # the pre-training corpus, see below

Own sources: a folder (every file with a video extension in VIDEO_EXTS, sorted by name) or a
list of paths, or of dicts path/width/height/bit_depth/fps for raw .yuv whose name does not
say its geometry (`clip_1920x1080_10bit.yuv` does; 8-bit 4:2:0 unless it says otherwise).
Each is read with data.read_clip: its middle `frames` frames (away from fades and titles),
scaled with its aspect ratio kept until it covers `size`, then centre-cropped to it, re-timed to
24 fps. That cut is the lossless reference; `source` is the file name's stem. Too short,
unreadable or duplicated (same file twice, or the same stem) sources are found before any
encoding, in one error naming every bad file.

Layout of root: `toy.csv` (columns path,mos,source,codec,level,split,reference; paths relative
to root), `ref/<source>.mp4` (lossless H.264 sources, kept because they are small and useful as
the reference column), `<codec>/<source>_<level>.<ext>`, and once make_held_out has run,
`held_out/toy_vvc.csv` and `held_out/vvc/` (paths relative to held_out/). The fixed `split`
column holds out every fourth content, and only those are encoded with the held-out VVC; make
your own content splits from the `source` column. A build checks first that the ffmpeg has every
encoder and filter it needs.

The pre-training corpus: more synthetic content than the student sees, labelled by VMAF, on
which the teacher learns alone first; an honest stand-in for pre-training on millions of
natural videos, which the official weights are. draw_contents(n, seed) draws n lavfi graphs
from parameterised families of the toy set's generators (noise textures, perlin noise, the
Mandelbrot set, life and elementary automata, Sierpinski fractals, gradients, geq pictures,
test patterns, blends of two), drawing texture scale, contrast, colour and motion. make_corpus
encodes and labels them exactly as the toy set is (same references, codecs, levels, VMAF and
checks; no VVC) into `corpus.csv` (columns path,mos,source,codec,level,split,reference; split is
train throughout), in the same layout. It holds no variant of the toy set's 12 test contents (see
draw_contents): the teacher learns there what the student's 39 contents cannot show, without
seeing what it is tested on.
    csv = make_corpus("data/corpus")  # 200 contents x h264, av1: 1600 videos, ~65 s on 2 cores
    csv = make_corpus("data/c", contents=1000, codecs=("h264", "hevc", "vp9", "avs2", "av1"))
Cost, in ffmpeg CPU seconds per content (2-core machine): reference 0.10, h264 0.26, av1 0.28, hevc
0.41, avs2 0.41, vp9 0.47, vvc 2.7 (Intel Xeon, 2026-12-08); two workers on two idle cores take half
that in wall time (the default: 124 CPU s). Its labels by level 1-4: mean VMAF 22, 43, 70, 93 (toy
set: 12-24, 35-40, 66-67, 92-94).

train_once runs a training command once into a folder built by build_once. pretrained_teacher is
train.py's teacher stage with it: the teacher trained alone on the corpus (train.py --student
none) before it meets the toy set, cached by a hash of its arguments and the corpus's marker.

Every build (build_once) happens in a temporary folder beside root and is renamed into place
only when complete, with a marker root/.complete holding a hash of every build parameter (for
own sources also each file's path, size and modification time): a second call returns at once,
any change rebuilds, and the marker's text is the key to hash when caching what is made from it.

Needs numpy, the ffmpeg bundled with imageio-ffmpeg and video.py (its clip reader); the teacher
stage also runs train.py (torch) as a child process.
"""
import csv
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial

import numpy as np

from contents import FPS, GRAPH_SIZE, TOY_SOURCES, draw_contents
from video import FFMPEG, YUV_KEYS, probe, read_clip, resize

TOY_SIZE, TOY_FPS, TOY_FRAMES = GRAPH_SIZE, FPS, 16  # multiples of 16 (every encoder takes them)

# codec -> (file extension, encoder arguments with {q}, quality values for levels 1..4)
TOY_CODECS = {
    "h264": ("mp4", "-c:v libx264 -preset medium -threads 1 -crf {q}", (51, 41, 33, 22)),
    "hevc": ("mp4", "-c:v libx265 -preset medium -crf {q} "
             "-x265-params pools=none:frame-threads=1:log-level=error", (51, 42, 35, 23)),
    "vp9": ("webm", "-c:v libvpx-vp9 -deadline good -cpu-used 4 -row-mt 0 -threads 1 -b:v 0 "
            "-crf {q} -qmin {q} -qmax {q} -auto-alt-ref 0 -lag-in-frames 0", (63, 59, 47, 25)),
    "avs2": ("avs2", "-c:v libxavs2 -xavs2-params thread_frames=1:thread_rows=1 -qp {q}",
             (63, 50, 39, 23)),
    "av1": ("mp4", "-c:v libaom-av1 -usage realtime -cpu-used 8 -row-mt 0 -threads 1 -aq-mode 0 "
            "-crf {q} -qmin {q} -qmax {q}", (63, 58, 47, 25)),
    "vvc": ("266", "-c:v libvvenc -preset faster -threads 1 -pix_fmt yuv420p10le -qp {q}",
            (60, 46, 38, 27)),
}
TOY_HELD_OUT = ("vvc",)  # make_held_out: the test contents only, in held_out/toy_vvc.csv
TRAINED_CODECS = tuple(c for c in TOY_CODECS if c not in TOY_HELD_OUT)  # Waterloo IVC 4K's five
TOY_ALONE = ("avs2",)  # libxavs2 crashes when two of its encoders share a process
TOY_TINY = dict(sources=("mandel_full", "noise_mid_zoom", "life_classic", "gradient_spiral"),
                codecs=("h264", "av1"), frames=12)
TOY_COLUMNS = ["path", "mos", "source", "codec", "level", "split", "reference"]
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"]
LOSSLESS = "-c:v libx264 -qp 0 -preset medium -threads 1"  # the references
REF_CHAIN = "scale={w}:{h},format=yuv420p,setsar=1,fps={fps}"  # every reference passes through it
SYNC = "format=yuv420p,settb=1/{fps},setpts=N"  # before VMAF: frames paired by index
VIDEO_EXTS = {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mts", ".mpg",
              ".mpeg", ".flv", ".wmv", ".3gp", ".y4m", ".yuv", ".264", ".h264", ".265", ".hevc",
              ".ivf"}
PROGRESS_EVERY = 10  # seconds between progress lines
MARKER = ".complete"  # in a finished build's root: the hash of its build parameters


# -----------------------------------------------------------------------------
# running and checking the ffmpeg


def run_ffmpeg(args, cwd=None, timeout=600):
    """Run the bundled ffmpeg quietly on `args` (no stdin, errors only, overwrite); returns
    (ok, what went wrong). A failed encode can still exit 0: callers check their outputs."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    env = dict(os.environ, SVT_LOG="1")  # SVT-AV1 prints its banner to stderr otherwise
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"ffmpeg did not finish within {timeout} s (killed)"
    return r.returncode == 0, f"exit code {r.returncode}; stderr ends:\n{r.stderr[-1500:]}"


def _filters_in(graph):
    """Names of the filters in a lavfi graph: each ,/;-separated part, [labels] and '...'
    dropped, up to '='."""
    parts = re.split(r"[,;]", re.sub(r"'[^']*'", "", graph))
    return {re.sub(r"\[\w+\]", "", p).split("=")[0].strip() for p in parts} - {""}


def _ffmpeg_names(kind):
    """What `ffmpeg -encoders` or `-filters` lists: the second word of each line (plus harmless
    legend words)."""
    out = subprocess.run([FFMPEG, "-nostdin", "-hide_banner", f"-{kind}"], capture_output=True,
                         text=True).stdout
    return {line.split()[1] for line in out.splitlines() if len(line.split()) > 1}


def _check_ffmpeg(codecs, graphs):
    """Raise one error naming every encoder and filter of this build that the ffmpeg lacks."""
    args = [LOSSLESS] + [TOY_CODECS[c][1] for c in codecs]
    encoders = {re.search(r"-c:v (\S+)", a)[1] for a in args}
    filters = {"libvmaf", "split"}.union(*map(_filters_in, [REF_CHAIN, SYNC, *graphs]))
    missing = {"encoders": sorted(encoders - _ffmpeg_names("encoders")),
               "filters": sorted(filters - _ffmpeg_names("filters"))}
    if any(missing.values()):
        lacks = "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items() if v)
        raise RuntimeError(f"toy set: the ffmpeg at {FFMPEG} lacks {lacks}. The toy set needs the "
                           "ffmpeg bundled with imageio-ffmpeg (check that IMAGEIO_FFMPEG_EXE does "
                           "not point to another one).")


# -----------------------------------------------------------------------------
# references, encodes, labels


def _make_reference(inputs, out, frames, size, cwd):
    """Render ffmpeg `inputs` (a lavfi graph, or raw frames) to a lossless H.264 file (qp 0) of
    exactly `frames` frames of `size`.

    Lossless H.264 in mp4 rather than FFV1 in mkv: it is smaller here (motion compensation
    codes pans almost for free) and mp4 keeps exact 1/24 s timestamps, where mkv's 1 ms clock
    made encoders drop and repeat frames.
    """
    chain = REF_CHAIN.format(w=size[0], h=size[1], fps=TOY_FPS)
    args = [*inputs, "-vf", chain, "-frames:v", str(frames), *LOSSLESS.split(), *BITEXACT, out]
    ok, err = run_ffmpeg(args, cwd)
    if not ok or not os.path.getsize(os.path.join(cwd, out)):
        raise RuntimeError(f"toy set: could not render {out} from {inputs[-1]!r}:\n{err}")


def _run_and_check(encs, lab, outs, frames, cwd, work):
    """Run the encodes, then the labelling; return None, or what went wrong, naming the file."""
    for enc in encs:
        ok, err = run_ffmpeg(enc, cwd)
        if not ok:
            return f"{', '.join(outs)}: encoding failed: {err}"
    for out in outs:
        path = os.path.join(cwd, out)
        if not os.path.exists(path) or not os.path.getsize(path):
            return f"{out}: empty or missing output although the encoder exited 0"
    ok, err = run_ffmpeg(lab, cwd)
    if not ok:
        return f"{', '.join(outs)}: decoding or VMAF failed: {err}"
    with open(os.path.join(cwd, f"{work}_frames.txt")) as f:
        streams = [line.split(",")[0].strip() for line in f if not line.startswith("#")]
    for i, out in enumerate(outs):
        if streams.count(str(i)) != frames:
            return f"{out}: decodes to {streams.count(str(i))} frames, expected {frames}"
    return None


def _encode_and_label(ref, outs, codec, frames, cwd, work):
    """Encode `ref` at the 4 levels of `codec` (one ffmpeg), then VMAF all 4 (one ffmpeg).

    Returns the 4 VMAF means, or raises naming the bad file. Each output is checked: it must be
    non-empty and decode to `frames` frames (a broken encoder run can exit 0 with an empty file).
    """
    ext, args, levels = TOY_CODECS[codec]
    n = len(outs)
    groups = [[i] for i in range(n)] if codec in TOY_ALONE else [range(n)]
    encs = [["-i", ref] + [a for i in g for a in ("-map", "0:v", *args.format(q=levels[i]).split(),
                                                  *BITEXACT, outs[i])] for g in groups]
    # Frames are paired by index (raw .avs2/.266 streams carry no reliable timestamps), and
    # VMAF repeats a short input's last frame, so decoded frames are also counted on the side.
    sync = SYNC.format(fps=TOY_FPS)
    graph = f"[{n}:v]{sync},split={n}" + "".join(f"[r{i}]" for i in range(n))
    for i in range(n):
        graph += (f";[{i}:v]{sync},split[d{i}][c{i}];"
                  f"[d{i}][r{i}]libvmaf=log_fmt=json:log_path={work}_{i}.json[v{i}]")
    # one decoder thread each: five decoders side by side, 15% less CPU than their thread pools
    lab = [a for p in (*outs, ref) for a in ("-threads", "1", "-i", p)] + ["-filter_complex", graph]
    lab += [a for i in range(n) for a in ("-map", f"[v{i}]")] + ["-f", "null", "-"]
    lab += [a for i in range(n) for a in ("-map", f"[c{i}]")]
    lab += ["-f", "framemd5", f"{work}_frames.txt"]
    for attempt in range(2):  # a failed, empty or short encode is retried once
        problem = _run_and_check(encs, lab, outs, frames, cwd, work)
        if problem is None:
            logs = [os.path.join(cwd, f"{work}_{i}.json") for i in range(n)]
            return [json.load(open(p))["pooled_metrics"]["vmaf"]["mean"] for p in logs]
    raise RuntimeError(f"toy set: {problem}")


def _build_source(name, inputs, codecs, frames, size, cwd, work):
    """Render one content's reference and encode and label it with every codec; returns its CSV
    rows. `work`: a prefix for scratch files that no other content shares (names may hold any
    character)."""
    ref = f"ref/{name}.mp4"
    _make_reference(inputs, ref, frames, size, cwd)
    return _encode_reference(name, ref, frames, codecs, cwd, work)


def _encode_reference(name, ref, frames, codecs, cwd, work):
    """Encode and label the reference `ref` (relative to cwd) of content `name` with every codec;
    returns its CSV rows."""
    rows = []
    for codec in codecs:
        ext, _, levels = TOY_CODECS[codec]
        outs = [f"{codec}/{name}_{level}.{ext}" for level in range(1, len(levels) + 1)]
        scores = _encode_and_label(ref, outs, codec, frames, cwd, work=f"{work}_{codec}")
        rows += [dict(path=o, mos=f"{s:.3f}", source=name, codec=codec, level=lvl, reference=ref)
                 for lvl, (o, s) in enumerate(zip(outs, scores), 1)]
    return rows


def _encode_contents(contents, workers, step):
    """Run contents' jobs (each a function of no arguments returning its CSV rows: _build_source
    or _encode_reference with their arguments bound), `workers` at a time; returns the rows in
    content order. step(done) is called as contents finish. The first failure cancels the contents
    not started and raises."""
    with ThreadPoolExecutor(workers) as pool:  # each job is an ffmpeg process, so threads suffice
        jobs = [pool.submit(content) for content in contents]
        try:
            for done, job in enumerate(as_completed(jobs), 1):
                job.result()  # the first failure raises here
                step(done)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return [row for job in jobs for row in job.result()]


# -----------------------------------------------------------------------------
# own sources


def _list_sources(sources):
    """A folder's video files (sorted) or a list of paths or dicts -> dicts(name, path, yuv)."""
    if isinstance(sources, (str, os.PathLike)):
        folder = pathlib.Path(sources)
        if not folder.is_dir():
            raise ValueError(f"toy set: sources={str(folder)!r} is not a folder (give a folder or "
                             "a list of files)")
        sources = sorted(str(p) for p in folder.iterdir()
                         if p.suffix.lower() in VIDEO_EXTS and p.is_file())
        if not sources:
            raise ValueError(f"toy set: no video files ({' '.join(sorted(VIDEO_EXTS))}) in "
                             f"{folder}")
    entries = []
    for s in sources:
        s = dict(s) if isinstance(s, dict) else dict(path=s)
        path, yuv = str(s.pop("path", "")), {k: s.pop(k) for k in YUV_KEYS if k in s}
        if not path or s:
            raise ValueError(f"toy set: a source is a path or a dict with path and optionally "
                             f"{', '.join(YUV_KEYS)}; got "
                             f"{'no path' if not path else 'unknown keys ' + ', '.join(s)}")
        entries.append(dict(name=pathlib.Path(path).stem, path=path, yuv=yuv))
    if not entries:
        raise ValueError("toy set: no sources given")
    return entries


def _fingerprint(source):
    """What identifies a source file's contents for the cache: absolute path, size, modification
    time."""
    try:
        st = os.stat(source["path"])
        stat = [st.st_size, st.st_mtime_ns]
    except OSError:
        stat = None  # reported as unreadable when the build starts
    return [os.path.abspath(source["path"]), stat, source["yuv"]]


def _cover(clip, size):
    """(T, H, W, 3) uint8 -> (T, h, w, 3) for size (w, h): scaled (bilinear, antialiased), aspect
    ratio kept, until it covers w x h, then centre-cropped. One frame at a time: a 4K clip in float
    would take gigabytes."""
    (w, h), (_, H, W, _) = size, clip.shape
    scale = max(w / W, h / H)
    sh, sw = max(h, round(H * scale)), max(w, round(W * scale))
    y, x = (sh - h) // 2, (sw - w) // 2
    scaled = (resize(np.asarray(f, np.float32).transpose(2, 0, 1), (sh, sw)) for f in clip)
    out = [f[:, y : y + h, x : x + w] for f in scaled]  # (3, h, w) each
    return np.clip(np.stack(out) + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _prepare_sources(sources, frames, size, cwd, pool):
    """Cut, scale and write each source's frames to `cwd`/work/<i>.rgb; returns each one's ffmpeg
    input arguments. Raises one error naming every duplicated, unreadable or too short source."""
    duplicate, seen = {}, {}
    for i, s in enumerate(sources):
        real, stem = os.path.realpath(s["path"]), s["name"]  # an absolute path never equals a stem
        if real in seen or stem in seen:
            what = "the same file as" if real in seen else "the same stem (content name) as"
            duplicate[i] = f"{s['path']}: {what} {seen.get(real) or seen[stem]}"
        seen.setdefault(real, s["path"])
        seen.setdefault(stem, s["path"])

    def prepare(i, s):
        if i in duplicate:
            return duplicate[i]
        try:
            info = probe(s["path"], **s["yuv"])
            if info["frames"] < frames:
                return f"{s['path']}: {info['frames']} frames, fewer than the {frames} asked"
            start = (info["frames"] - frames) // 2  # the middle of the video
            clip = read_clip(s["path"], range(start, start + frames), info=info, **s["yuv"])
            _cover(clip, size).tofile(os.path.join(cwd, f"work/{i}.rgb"))
        except (OSError, ValueError) as e:  # probe and read_clip name the file in their messages
            return str(e)

    errors = [e for e in pool.map(prepare, range(len(sources)), sources) if e]
    if errors:
        raise ValueError(f"toy set: {len(errors)} of {len(sources)} sources cannot be used, "
                         "nothing was encoded:\n" + "\n".join(errors))
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}",
           "-r", str(TOY_FPS), "-i"]
    return [raw + [f"work/{i}.rgb"] for i in range(len(sources))]


# -----------------------------------------------------------------------------
# the build


def _progress(log, total, what):
    """A function to call as contents finish: it logs `what: done/total contents, s` every
    PROGRESS_EVERY s and at the end."""
    start = last = time.monotonic()

    def step(done):
        nonlocal last
        now = time.monotonic()
        if log and (now - last >= PROGRESS_EVERY or done == total):
            log(f"{what}: {done}/{total} contents, {now - start:.0f} s")
            last = now
    return step


def _write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, columns)
        out.writeheader()
        out.writerows(rows)


def _is_built(root, key):
    marker = pathlib.Path(root) / MARKER
    return marker.is_file() and marker.read_text() == key


def _remove(folder):
    """Delete `folder` without ever leaving it half-deleted under its name: renamed away first."""
    old = tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent)
    try:
        os.replace(folder, os.path.join(old, "stale"))
    except FileNotFoundError:
        pass  # another builder moved it first
    shutil.rmtree(old)


def build_once(root, key, build):
    """Make the folder `root` by calling build(tmp) once per `key` (a string); returns
    pathlib.Path(root).

    If root/.complete (MARKER) holds `key`, nothing runs. Otherwise build(tmp) fills `tmp`, an
    empty pathlib.Path folder beside root; then the marker is written into it last and it is
    renamed to root, replacing a root built for another key. An exception in build (or an
    interrupt) removes tmp and leaves root as it was: never a half-written root, never a marker
    without everything before it. Concurrent builders of one key are safe: the first to finish
    wins and the others discard their copies. (A builder killed outright leaves its tmp folder,
    `.<root name>.building-*`, for you to delete.) E.g., a model trained once per corpus:
        key = hashlib.sha256(((corpus.parent / MARKER).read_text() + recipe).encode()).hexdigest()
        build_once("runs/teacher", key, lambda tmp: train(corpus, out=tmp / "teacher.pt"))
    """
    if not isinstance(key, str):
        raise TypeError(f"build_once: key must be a str (a hash of the build's parameters), "
                        f"got {type(key).__name__}")
    root = pathlib.Path(root)
    if _is_built(root, key):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text(key)  # last write: a folder without it is never complete
        while not _is_built(root, key):
            if root.exists():  # built for another key, or by hand
                _remove(root)
            try:
                os.replace(tmp, root)  # atomic; refused if another builder's root got there first
                return root
            except OSError:
                if not root.exists():
                    raise
        shutil.rmtree(tmp)  # another builder finished the same build first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _build_toy(tmp, names, graphs, sources, codecs, frames, size, workers, log, root):
    """Fill `tmp` with the toy set of make_toy_dataset: references, encodes, labels, CSVs."""
    _check_ffmpeg(codecs, graphs)
    for d in ("ref", "work", *codecs):
        (tmp / d).mkdir()
    if sources is None:
        inputs = [["-f", "lavfi", "-i", g] for g in graphs]
    else:
        with ThreadPoolExecutor(workers) as pool:
            inputs = _prepare_sources(sources, frames, size, tmp, pool)
    if log:
        log(f"toy set: building {len(names)} contents x 4 levels of {' '.join(codecs)} in {root}")
    test = {n for i, n in enumerate(names) if i % 4 == 3}  # every 4th content: each family shows up
    step = _progress(log, len(names), "toy set")
    rows = _encode_contents([partial(_build_source, n, inp, codecs, frames, size, tmp, f"work/{i}")
                             for i, (n, inp) in enumerate(zip(names, inputs))], workers, step)
    for row in rows:
        row["split"] = "test" if row["source"] in test else "train"
    _write_csv(tmp / "toy.csv", rows, TOY_COLUMNS)
    shutil.rmtree(tmp / "work")


def _bad_size(size):
    """A frame size (w, h) that some encoder refuses: not two even numbers of at least 16."""
    return len(size) != 2 or any(s < 16 or s % 2 for s in size)


def make_toy_dataset(root, tiny=False, sources=None, codecs=None, frames=None, size=TOY_SIZE,
                     workers=2, log=print):
    """Build (or find cached) the toy set in `root`; return the path of its `toy.csv`.

    tiny=True makes the test-sized built-in variant through the same code. sources: a folder or
    a list of your own videos instead of the built-in contents (module docstring). codecs: names
    in TOY_CODECS but not TOY_HELD_OUT (default all of those; make_held_out adds VVC).
    frames, size (w, h): of every reference and encode (default TOY_FRAMES, or the tiny set's;
    TOY_SIZE). log: called with a start line and progress lines (None: silent).
    Built by build_once: in a temporary folder beside root, renamed into place when complete; a
    marker holding a hash of the build parameters makes a second call return at once.
    """
    root = pathlib.Path(root)
    codecs = tuple(codecs or (TOY_TINY["codecs"] if tiny else TRAINED_CODECS))
    frames = frames or (TOY_TINY["frames"] if tiny else TOY_FRAMES)
    size = tuple(size)
    unknown = [c for c in codecs if c not in TRAINED_CODECS or codecs.count(c) > 1]
    bad_size = _bad_size(size)
    if (tiny and sources is not None) or not codecs or unknown or frames < 2 or bad_size:
        raise ValueError(f"toy set: need tiny or sources (not both), codecs from "
                         f"{', '.join(TRAINED_CODECS)} (each once; {', '.join(TOY_HELD_OUT)}: "
                         f"make_held_out), frames >= 2 and an even size >= 16; got tiny={tiny}, "
                         f"codecs {codecs}, frames={frames}, size={size}")
    if sources is None:
        names = TOY_TINY["sources"] if tiny else tuple(TOY_SOURCES)
        graphs = [TOY_SOURCES[n] for n in names]
        what = dict(zip(names, graphs))
    else:
        sources = _list_sources(sources)
        names, graphs = [s["name"] for s in sources], []
        what = [_fingerprint(s) for s in sources]
    params = dict(size=size, fps=TOY_FPS, frames=frames, sources=what,
                  codecs={c: TOY_CODECS[c] for c in codecs}, ffmpeg=os.path.basename(FFMPEG))
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    build_once(root, key, lambda tmp: _build_toy(tmp, names, graphs, sources, codecs, frames, size,
                                                  workers, log, root))
    return root / "toy.csv"


HELD_OUT = "held_out"  # make_held_out's folder, inside the toy set's root


def make_held_out(root, codecs=TOY_HELD_OUT, workers=2, log=print):
    """The test contents of the toy set in `root` (built by make_toy_dataset) encoded with codecs
    that no model trains on (default VVC) at 4 levels and labelled with VMAF from the toy set's own
    lossless references, exactly as the toy set is; returns the path of root/held_out/toy_vvc.csv
    (its paths relative to that folder, its references ../ref/). Built once by build_once inside
    root, so a rebuilt toy set takes its old held-out set with it. VVC encodes at about 2.7 CPU s a
    content, longer than the five training codecs together: only what asks for it pays (the
    cross-codec rows of tools/compare.py); the quick start never does."""
    root = pathlib.Path(root)
    if not (root / MARKER).is_file():
        raise ValueError(f"held-out codecs: {root} is not a built toy set (make_toy_dataset first)")
    codecs = tuple(codecs)
    if not codecs or any(c not in TOY_HELD_OUT or codecs.count(c) > 1 for c in codecs):
        raise ValueError(f"held-out codecs: need codecs from {', '.join(TOY_HELD_OUT)}, each once; "
                         f"got {codecs}")
    with open(root / "toy.csv", newline="") as f:
        tests = {r["source"]: r["reference"] for r in csv.DictReader(f) if r["split"] == "test"}
    params = dict(toy=(root / MARKER).read_text(), codecs={c: TOY_CODECS[c] for c in codecs})
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

    def build(tmp):
        _check_ffmpeg(codecs, [])
        for d in ("work", *codecs):
            (tmp / d).mkdir()
        if log:
            log(f"held-out codecs: {len(tests)} test contents x 4 levels of {' '.join(codecs)} in "
                f"{root / HELD_OUT}")
        rows = _encode_contents(  # from the toy set's references, beside this folder
            [partial(_encode_reference, name, f"../{ref}", probe(root / ref)["frames"], codecs,
                     tmp, f"work/{i}") for i, (name, ref) in enumerate(tests.items())],
            workers, _progress(log, len(tests), "held-out codecs"))
        _write_csv(tmp / "toy_vvc.csv", [dict(row, split="test") for row in rows], TOY_COLUMNS)
        shutil.rmtree(tmp / "work")

    return build_once(root / HELD_OUT, key, build) / "toy_vvc.csv"


# -----------------------------------------------------------------------------
# the pre-training corpus (its contents: contents.draw_contents)

# the two cheapest encoders, of two generations: ~65 s on 2 idle cores (module docstring)
CORPUS_CONTENTS, CORPUS_CODECS = 200, ("h264", "av1")


def _build_corpus(tmp, graphs, chosen, frames, size, workers, log, root):
    """Fill `tmp` with the corpus of make_corpus: references, encodes, labels, corpus.csv.
    chosen[i]: the codecs of content i."""
    codecs = list(dict.fromkeys(c for ch in chosen for c in ch))  # in the order given
    _check_ffmpeg(codecs, graphs.values())
    for d in ("ref", "work", *codecs):
        (tmp / d).mkdir()
    if log:
        each = "" if all(len(c) == len(codecs) for c in chosen) else f" ({len(chosen[0])} each)"
        log(f"corpus: building {len(graphs)} contents x 4 levels of {' '.join(codecs)}{each} "
            f"in {root}")
    inputs = [["-f", "lavfi", "-i", g] for g in graphs.values()]
    step = _progress(log, len(graphs), "corpus")
    rows = _encode_contents([partial(_build_source, n, inp, cs, frames, size, tmp, f"work/{i}")
                             for i, (n, inp, cs) in enumerate(zip(graphs, inputs, chosen))],
                            workers, step)
    _write_csv(tmp / "corpus.csv", [dict(row, split="train") for row in rows], TOY_COLUMNS)
    shutil.rmtree(tmp / "work")


def make_corpus(root, contents=CORPUS_CONTENTS, seed=0, codecs=CORPUS_CODECS, per_content=None,
                frames=TOY_FRAMES, size=TOY_SIZE, workers=2, log=print):
    """Build (or find cached) the pre-training corpus in `root`; return the path of corpus.csv.

    contents, seed: draw_contents(contents, seed) are its contents. codecs: names in TOY_CODECS
    but not TOY_HELD_OUT; each content is encoded at the 4 levels of each and labelled with VMAF
    exactly as the toy set is. per_content=k: each content gets k of the codecs instead, taken in
    turn (content i: codecs i*k .. i*k+k-1, modulo their number), so that every codec is seen as
    often at the cost of k. frames, size (w, h): of every reference and encode. log: called
    with a start line and progress lines (None: silent). Built by build_once: root/.complete
    holds the hash of every build parameter (the graphs themselves, so a change to a family
    rebuilds too), which is the key to hash into anything made from the corpus.
    """
    root, codecs, size = pathlib.Path(root), tuple(codecs), tuple(size)
    graphs = draw_contents(contents, seed)  # checks contents and seed
    bad = [c for c in codecs if c not in TOY_CODECS or c in TOY_HELD_OUT or codecs.count(c) > 1]
    bad_size = _bad_size(size)
    k = len(codecs) if per_content is None else per_content
    if not codecs or bad or not isinstance(frames, int) or frames < 2 or bad_size or \
            not (isinstance(k, int) and 1 <= k <= len(codecs)):
        allowed = ", ".join(c for c in TOY_CODECS if c not in TOY_HELD_OUT)
        raise ValueError(f"corpus: need codecs from {allowed}, 1 <= per_content <= their number, "
                         f"integer frames >= 2 and an even size >= 16; got codecs {codecs}, "
                         f"per_content={per_content!r}, frames={frames!r}, size={size}")
    chosen = [tuple(codecs[(i * k + j) % len(codecs)] for j in range(k)) for i in range(contents)]
    params = dict(contents=graphs, size=size, fps=TOY_FPS, frames=frames, chosen=chosen,
                  codecs={c: TOY_CODECS[c] for c in codecs}, chains=[LOSSLESS, REF_CHAIN, SYNC],
                  ffmpeg=os.path.basename(FFMPEG))
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    build_once(root, key, lambda tmp: _build_corpus(tmp, graphs, chosen, frames, size, workers,
                                                    log, root))
    return root / "corpus.csv"


# -----------------------------------------------------------------------------
# a training run, once


def train_once(root, key, command, test_items, log=print, tag="teacher stage"):
    """Run the train.py `command` (its argument list, the interpreter and script first) once into
    `root`, inside build_once(root, key); return root/last.pt.

    The run gets `--test-labels ROOT/test.csv` (test_items: {path, mos, source, ...}, what it is
    scored on at its end) and `--out ROOT`, in one process (WORLD_SIZE=1), its lines logged as
    `  TAG | ...`. A second call with the same key returns at once; a failed run raises, and Ctrl-C
    or SIGTERM during it stops it too: either way nothing of it is kept."""
    def build(folder):
        with open(folder / "test.csv", "w", newline="") as f:
            out = csv.DictWriter(f, ["path", "mos", "source", "codec", "level"],
                                 extrasaction="ignore")
            out.writeheader()
            out.writerows(test_items)
        cmd = [*command, "--test-labels", str(folder / "test.csv"), "--out", str(folder)]
        log(f"{tag}: python {' '.join(cmd[1:])}")
        env = dict(os.environ, WORLD_SIZE="1", PYTHONUNBUFFERED="1")  # one process, lines at once
        t0 = time.time()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) as proc:
            try:
                for line in proc.stdout:
                    log(f"  {tag} | {line.rstrip()}")
            except BaseException:  # Ctrl-C, or SIGTERM below: the run stops too
                proc.kill()
                raise
        if proc.returncode:
            raise RuntimeError(f"the {tag} failed (exit {proc.returncode}); its log is above")
        log(f"{tag}: done in {time.time() - t0:.0f}s")

    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # as Ctrl-C: clean up
    try:
        build_once(root, key, build)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return pathlib.Path(root) / "last.pt"


# -----------------------------------------------------------------------------
# train.py's teacher stage: what the teacher knows before it meets the student's labels

# The stage is train.py with the teacher alone on the corpus, with the run's model settings.
TRAIN_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
STAGE = ["--profile", "quick", "--student", "none", "--pretrain", "0", "--epochs", "1",
         "--warmup", "0.1", "--log-every", "50"]
TO_STAGE = ("teacher", "frames", "size", "stride", "init_values", "patch_init", "dtype", "seed")


def toy_root(args):
    """Where train.py's toy set lives (built there when it is not): --data-root, else under
    data/."""
    name = os.path.basename(os.path.normpath(args.toy_sources)) if args.toy_sources else None
    return args.data_root or os.path.join(
        "data", f"toy-{name}" if name else "toy" if args.toy_variant == "default" else "toy-tiny")


def pretrained_teacher(args, test_items, log=print):
    """The checkpoint of a teacher trained alone (`train.py --student none`) on a corpus of
    args.pretrain synthetic contents the toy set does not hold, scored on `test_items` (the toy
    split's) at its end: trained once, then found by the hash of what makes its weights (the
    stage's arguments and the corpus's own marker). None when the train.py run (args) needs no
    such teacher: no --pretrain, a --teacher-ckpt, no teacher or no student, a teacher that no
    loss term uses (distill.teacher_runs), or a plain --eval-only."""
    from distill import teacher_runs  # torch: only for train.py's stage

    if not (args.pretrain and not args.teacher_ckpt and args.teacher != "none"
            and args.student != "none" and teacher_runs(
                args.w_teacher, args.w_align, True,
                args.w_unlabeled if args.unlabeled or args.labelled_sources else 0)
            and (args.resume or not args.eval_only)):
        return None
    beside = os.path.dirname(os.path.abspath(toy_root(args)))  # the corpus and the teacher: data/
    corpus = make_corpus(os.path.join(beside, f"corpus-{args.pretrain}"), contents=args.pretrain,
                         log=log)
    stage = [*STAGE, *(f"--{k.replace('_', '-')}={getattr(args, k)}" for k in TO_STAGE),
             *(["--resize"] if args.resize else []),  # the run's clips, where not the default
             *([f"--fragments={args.fragments}"] if args.fragments else []),
             "--data", "csv", "--labels", str(corpus), "--split", "official",
             "--label-range", "0", "100"]  # VMAF, as the toy set's
    inputs = dict(stage=stage, corpus=(corpus.parent / MARKER).read_text())
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()  # any change: another teacher
    command = [sys.executable, TRAIN_PY, *stage, f"--device={args.device}",
               f"--workers={args.workers}"]
    path = train_once(os.path.join(beside, f"teacher-{args.teacher}-{key[:12]}"), key, command,
                      test_items, log=log)
    log(f"teacher: pre-trained alone on {args.pretrain} synthetic contents the toy set does not "
        f"hold, labelled by VMAF\n  (a stand-in for pre-training on millions of natural videos, "
        f"which the official weights are): {path}")
    return str(path)
