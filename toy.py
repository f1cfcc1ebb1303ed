"""The toy set: a compressed-video quality set made from nothing but the bundled ffmpeg.

What: synthetic contents from ffmpeg's lavfi generators (fractals, cellular automata, noise
textures, pans and zooms), each encoded by the five Waterloo IVC 4K encoders (H.264, HEVC, VP9,
AVS2, AV1) at 4 quality levels, level 1 the worst as in Waterloo, and labelled with VMAF
against the lossless source (0-100, higher is better). The same contents encoded with VVC make
a held-out codec for cross-codec tests. The labels are VMAF, not human opinion scores.
The same build turns your own source videos into such a set (`sources=`).

Why: so that a new user with no data (and the tests) can run the whole pipeline in minutes.
A model must learn "how much detail did compression destroy relative to this content", so
what matters is variety of texture scale, contrast, colour and motion across contents.

Use:
    csv = make_toy_dataset("data/toy")                  # ~1.5 min on 2 cores, cached afterwards
    csv = make_toy_dataset("data/toy_tiny", tiny=True)  # a few seconds, for tests
    csv = make_toy_dataset("data/mine", sources="videos/")  # your own videos, see below

Own sources: a folder (every file with a video extension in VIDEO_EXTS, sorted by name) or a
list of paths, or of dicts path/width/height/bit_depth/fps for raw .yuv whose name does not
say its geometry (`clip_1920x1080_10bit.yuv` does; 8-bit 4:2:0 unless it says otherwise).
Each is read with data.read_clip: its middle `frames` frames (away from fades and titles),
scaled with its aspect ratio kept until it covers `size`, then centre-cropped to it, re-timed to
24 fps. That cut is the lossless reference; `source` is the file name's stem. Too short,
unreadable or duplicated (same file twice, or the same stem) sources are found before any
encoding, in one error naming every bad file.

Layout of root: `toy.csv` and, when VVC is built, `toy_vvc.csv` (columns path,mos,source,codec,level,split,
reference; paths relative to root), `ref/<source>.mp4` (lossless H.264 sources, kept because
they are small and useful as the reference column), `<codec>/<source>_<level>.<ext>`.
The fixed `split` column holds out every fourth content, and only those are encoded with the
held-out VVC; make your own content splits from the `source` column. A build checks first that
the ffmpeg has every encoder and filter it needs, happens in a temporary folder next to root
and is renamed into place only when complete, with a marker holding a hash of the build
parameters (and of each own source's path, size and modification time).

Needs numpy, the ffmpeg bundled with imageio-ffmpeg and video.py (its clip reader).
"""
import csv
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from video import FFMPEG, YUV_KEYS, probe, read_clip, resize

TOY_SIZE, TOY_FPS, TOY_FRAMES = (176, 144), 24, 16  # multiples of 16 (every encoder takes them), > 112 crops

# name -> lavfi graph. Fixed seeds keep noise sources identical from run to run.
TOY_SOURCES = {
    # fractals: zooms, morphs and rotations
    "mandel_seahorse": "mandelbrot=s=176x144:r=24:start_x=-0.743643887037151:start_y=0.13182590420533:start_scale=0.02:end_scale=0.01:end_pts=24",
    "mandel_full": "mandelbrot=s=176x144:r=24:start_x=-0.6:start_y=0:start_scale=2.6:end_scale=2.2:end_pts=24:inner=period",
    "mandel_spiral": "mandelbrot=s=176x144:r=24:start_x=-0.7746806106269039:start_y=-0.1374168856037867:start_scale=0.003:end_scale=0.002:end_pts=24:outer=normalized_iteration_count",
    "mandel_morph": "mandelbrot=s=176x144:r=24:start_x=-1.25:start_y=0.02:start_scale=0.2:end_scale=0.17:end_pts=24:morphamp=0.05:morphxf=3:morphyf=2:inner=convergence",
    "mandel_elephant_rot": "mandelbrot=s=256x256:r=24:start_x=0.2925:start_y=0.016:start_scale=0.03:end_scale=0.03:maxiter=500,rotate=a=t*0.5:ow=176:oh=144",
    "sierp_carpet": "sierpinski=s=176x144:r=24:type=carpet:seed=3:jump=2,lutrgb=r=val*0.9:g=val*0.6:b=80+val*0.3",
    "sierp_triangle": "sierpinski=s=176x144:r=24:type=triangle:seed=5:jump=1,negate,lutrgb=g=val*0.7:b=val*0.4",
    # cellular automata, cells of 2-4 pixels (1-pixel cells look like compression noise themselves)
    "life_classic": "life=s=88x72:r=24:ratio=0.35:seed=11:mold=12:life_color=#ffe070:death_color=#102040:mold_color=#604020,scale=176:144:flags=neighbor",
    "life_daynight": "life=s=59x48:r=24:ratio=0.5:seed=3:rule=B3678/S34678:life_color=#30c060:death_color=#202060,scale=176:144:flags=bicubic",
    "life_mold_big": "life=s=44x36:r=24:ratio=0.3:seed=21:mold=30:life_color=#ff4040:death_color=#f0f0e0:mold_color=#40a0ff,scale=176:144:flags=neighbor,gblur=sigma=1",
    "life_maze_soft": "life=s=44x36:r=24:ratio=0.45:seed=28:rule=B3/S1234:life_color=#e8c070:death_color=#403020,scale=176:144:flags=bicubic,gblur=sigma=1.5,noise=alls=12:allf=u:all_seed=28",
    "cellauto_18_big": "cellauto=s=59x48:r=24:rule=18:ratio=0.3:seed=2:full=1,scale=176:144:flags=neighbor,lutrgb=r=255-val*0.5:g=200:b=val",
    "cellauto_30_soft": "cellauto=s=88x72:r=24:rule=30:ratio=0.5:seed=4:full=1,scale=176:144:flags=bicubic,lutrgb=r=val*0.4:g=val*0.8",
    # noise textures (fixed seeds) moved by pans, zooms, rotations and shake
    "noise_fine_pan": "color=gray:s=320x240:r=24,noise=alls=100:allf=u:all_seed=1,gblur=sigma=1,eq=contrast=2,crop=176:144:x=t*40:y=t*20",
    "noise_mid_zoom": "color=gray:s=320x240:r=24,noise=alls=100:allf=u:all_seed=2,gblur=sigma=3,eq=contrast=5,zoompan=z=1+0.02*on:x=iw/2-iw/zoom/2:y=ih/2-ih/zoom/2:d=1:s=176x144:fps=24",
    "noise_coarse_rot": "color=gray:s=256x256:r=24,noise=alls=100:allf=u:all_seed=3,gblur=sigma=8,eq=contrast=12,rotate=a=t*0.4:ow=176:oh=144",
    "noise_boil": "color=gray:s=176x144:r=24,noise=alls=100:allf=t+u:all_seed=4,gblur=sigma=2.5,eq=contrast=5",
    "noise_colour": "color=gray:s=300x300:r=24,noise=alls=100:allf=u:all_seed=5,gblur=sigma=2,eq=contrast=4:saturation=3,hue=h=t*120,crop=176:144:x=60-t*50:y=t*60",
    "noise_streaks": "color=gray:s=400x144:r=24,noise=alls=100:allf=u:all_seed=6,gblur=sigma=6:sigmaV=0.5,eq=contrast=8,crop=176:144:x=t*90:y=0,colorchannelmixer=rr=1:gg=0.8:bb=0.5",
    "noise_faint": "color=0x807060:s=320x240:r=24,noise=alls=30:allf=u:all_seed=7,gblur=sigma=0.7,crop=176:144:x=t*30:y=40",
    "noise_sharp": "color=gray:s=256x200:r=24,noise=alls=100:allf=u:all_seed=8,gblur=sigma=4,eq=contrast=10,unsharp=7:7:2.5,scroll=h=0.01:v=0.004,crop=176:144",
    "noise_shake": "color=gray:s=240x200:r=24,noise=alls=100:allf=u:all_seed=25,gblur=sigma=2,eq=contrast=4,unsharp=5:5:1,crop=176:144:x=32+12*sin(t*19):y=28+9*cos(t*23),hue=s=0",
    "noise_parallax": "color=gray:s=480x144:r=24,noise=alls=100:allf=u:all_seed=11,gblur=sigma=12,eq=contrast=14,crop=176:144:x=t*20[bg];color=gray:s=480x144:r=24,noise=alls=100:allf=u:all_seed=12,gblur=sigma=1.2,eq=contrast=3,crop=176:144:x=t*110[fg];[bg][fg]blend=all_expr='A*0.65+B*0.35',eq=contrast=1.6:brightness=0.1,colorchannelmixer=rr=0.8:gg=1:bb=0.7",
    "noise_pebbles": "color=gray:s=640x288:r=24,noise=alls=100:allf=u:all_seed=36,gblur=sigma=5,eq=contrast=25,gblur=sigma=1,scale=320:144,crop=176:144:x=t*50,format=yuv420p,noise=c0s=20:c0f=u:all_seed=37,colorchannelmixer=rr=0.9:gg=0.75:bb=0.6",
    "noise_bars": "color=gray:s=176x144:r=24,noise=alls=100:allf=u:all_seed=26,gblur=sigma=3,eq=contrast=6,geq=lum='if(lt(mod(X*cos(T)+Y*sin(T),40),10),235,p(X,Y))':cb=128:cr=128",
    # perlin noise (1/f-like when octaves add up): clouds, foliage, water, marble, terrain
    "perlin_clouds": "perlin=s=176x144:r=24:octaves=6:persistence=0.6:xscale=1.5:yscale=1.5:tscale=1:random_mode=seed:random_seed=2",
    "perlin_fractal": "perlin=s=176x144:r=24:octaves=6:persistence=0.7:xscale=4:yscale=4:tscale=0.5:random_mode=seed:random_seed=1,format=gray,format=yuv420p,eq=contrast=2,pseudocolor=p=viridis",
    "perlin_fine": "perlin=s=176x144:r=24:octaves=3:persistence=0.8:xscale=16:yscale=12:tscale=2:random_mode=seed:random_seed=3,format=gray,format=yuv420p,eq=contrast=2,pseudocolor=p=turbo",
    "perlin_marble": "perlin=s=176x144:r=24:octaves=5:persistence=0.7:xscale=3:yscale=1:tscale=0.4:random_mode=seed:random_seed=4,format=gray,lutyuv=y=128+127*sin(val/9),format=yuv420p,pseudocolor=p=inferno",
    "perlin_marble_pan": "perlin=s=320x144:r=24:octaves=6:persistence=0.65:xscale=2:yscale=4:tscale=0:random_mode=seed:random_seed=29,format=gray,lutyuv=y=128+110*sin(val/6),format=yuv420p,pseudocolor=p=cividis,crop=176:144:x=t*60",
    "perlin_poster": "perlin=s=176x144:r=24:octaves=3:persistence=0.5:xscale=2:yscale=2:tscale=0.8:random_mode=seed:random_seed=5,format=gray,eq=contrast=2,lutyuv=y=floor(val/40)*40,format=yuv420p,pseudocolor=p=cool",
    "perlin_terrain": "perlin=s=264x216:r=24:octaves=6:persistence=0.65:xscale=2:yscale=2:tscale=0:random_mode=seed:random_seed=6,format=gray,format=yuv420p,eq=contrast=2.5,pseudocolor=p=cividis,zoompan=z=1.2+0.01*on:x=on*3:y=on*2:d=1:s=176x144:fps=24",
    "perlin_bark": "perlin=s=176x288:r=24:octaves=5:persistence=0.6:xscale=12:yscale=1:tscale=0:random_mode=seed:random_seed=38,format=gray,eq=contrast=3,format=yuv420p,colorchannelmixer=rr=0.7:gg=0.5:bb=0.3,crop=176:144:x=0:y=t*60",
    "perlin_foliage": "perlin=s=176x144:r=24:octaves=7:persistence=0.75:xscale=5:yscale=5:tscale=1.5:random_mode=seed:random_seed=21,format=gray,eq=contrast=3.5,format=yuv420p,colorchannelmixer=rr=0.35:gg=0.9:bb=0.25",
    "perlin_water": "perlin=s=176x144:r=24:octaves=4:persistence=0.5:xscale=8:yscale=20:tscale=6:random_mode=seed:random_seed=23,format=gray,eq=contrast=2.5,format=yuv420p,pseudocolor=p=blues",
    "perlin_skyline": "gradients=s=176x144:r=24:c0=0x3060c0:c1=0xf0d0a0:x0=88:y0=0:x1=88:y1=143:n=2:speed=0,format=rgb24[sky];perlin=s=176x144:r=24:octaves=5:persistence=0.6:xscale=1:yscale=4:tscale=0.3:random_mode=seed:random_seed=22,format=gray,geq=lum='if(gt(Y/H*255+p(X,Y)-128,200),0,255)',format=rgb24[m];[sky][m]blend=all_mode=multiply,format=gbrp,format=yuv420p,noise=c0s=16:c0f=u:all_seed=35",
    # smooth fields (gradients: colours and points given, its seed option is not honoured)
    "gradient_linear": "gradients=s=176x144:r=24:n=4:c0=0x3050a0:c1=0x60a0e0:c2=0xe0e0f0:c3=0x8040a0:x0=0:y0=0:x1=175:y1=143:speed=0.03:type=linear,format=yuv420p,noise=c0s=22:c0f=u:all_seed=31",
    "gradient_spiral": "gradients=s=176x144:r=24:n=3:c0=0x204080:c1=0xe0a040:c2=0x60c060:x0=20:y0=10:x1=150:y1=130:speed=0.05:type=spiral,format=yuv420p,noise=c0s=22:c0f=u:all_seed=32",
    "gradient_grain": "gradients=s=176x144:r=24:n=2:c0=0xd02040:c1=0x302090:x0=120:y0=80:x1=10:y1=10:speed=0.02:type=radial,format=yuv420p,noise=alls=14:allf=u:all_seed=24",
    "blobs": "color=gray:s=352x288:r=24,noise=alls=100:allf=u:all_seed=6,gblur=sigma=10,eq=contrast=30,scroll=h=0.004:v=0.003,scale=176:144,pseudocolor=p=plasma",
    # test patterns
    "testsrc2_pan": "testsrc2=s=352x288:r=24,crop=176:144:x=20+t*60:y=40+t*30",
    "colorspectrum_scroll": "colorspectrum=s=176x144:r=24:type=all,scroll=h=0.01,format=yuv420p,noise=alls=16:allf=u:all_seed=34",
    "smpte_rot": "smptehdbars=s=352x288:r=24,rotate=a=0.3+t*0.2:ow=176:oh=144",
    # mixtures of two generators
    "blend_mandel_zone": "mandelbrot=s=176x144:r=24:start_scale=1.5:end_scale=1.2:end_pts=24[a];zoneplate=s=176x144:r=24:kx2=30:ky2=30:kt2=2,format=rgb24[b];[a][b]blend=all_mode=multiply",
    "blend_life_perlin": "life=s=88x72:r=24:ratio=0.2:seed=5:mold=20,scale=176:144:flags=neighbor,format=rgb24[a];perlin=s=176x144:r=24:octaves=4:xscale=3:yscale=3:random_mode=seed:random_seed=6,format=rgb24[b];[a][b]blend=all_mode=screen",
    "blend_noise_gradient": "gradients=s=176x144:r=24:n=3:c0=0x40c040:c1=0xc040c0:c2=0x40a0c0:x0=0:y0=143:x1=175:y1=0:speed=0.04,format=rgb24[a];color=gray:s=176x144:r=24,noise=alls=100:allf=u:all_seed=8,gblur=sigma=1.5,eq=contrast=3,format=rgb24[b];[a][b]blend=all_mode=overlay",
    "blend_carpet_clouds": "sierpinski=s=176x144:r=24:type=carpet:seed=8,format=rgb24[a];perlin=s=176x144:r=24:octaves=5:xscale=2:yscale=2:random_mode=seed:random_seed=9,format=gray,format=yuv420p,pseudocolor=p=magma,format=rgb24[b];[a][b]blend=all_mode=difference",
    "carpet_grain": "sierpinski=s=176x144:r=24:type=carpet:seed=27:jump=1,format=yuv420p,noise=alls=25:allf=t+u:all_seed=27,lutrgb=r=val:g=val*0.85:b=val*0.6",
    # analytic pictures
    "geq_waves": "nullsrc=s=176x144:r=24,geq=lum='128+90*sin(X/7+T*4)*cos(Y/9-T*2)':cb='128+60*sin(X/30+T)':cr='128+60*cos(Y/25)',noise=c0s=20:c0f=u:all_seed=33",
    "geq_checker_warp": "nullsrc=s=176x144:r=24,geq=lum='if(mod(floor((X+8*sin(Y/10+T*3))/12)+floor(Y/12),2),220,30)':cb=100:cr=170",
    "geq_discs": "nullsrc=s=176x144:r=24,geq=lum='if(lt(hypot(X-60-40*T,Y-70),30),200,if(lt(hypot(X-130,Y-50-30*T),22),40,110+20*sin(X/3)*sin(Y/4)))':cb='if(lt(hypot(X-60-40*T,Y-70),30),90,140)':cr='if(lt(hypot(X-130,Y-50-30*T),22),200,120)'",
}

# codec -> (file extension, encoder arguments with {q}, quality values for levels 1..4)
TOY_CODECS = {
    "h264": ("mp4", "-c:v libx264 -preset medium -threads 1 -crf {q}", (51, 41, 33, 22)),
    "hevc": ("mp4", "-c:v libx265 -preset medium -crf {q} -x265-params pools=none:frame-threads=1:log-level=error", (51, 42, 35, 23)),
    "vp9": ("webm", "-c:v libvpx-vp9 -deadline good -cpu-used 4 -row-mt 0 -threads 1 -b:v 0 -crf {q} -qmin {q} -qmax {q} -auto-alt-ref 0 -lag-in-frames 0", (63, 59, 47, 25)),
    "avs2": ("avs2", "-c:v libxavs2 -xavs2-params thread_frames=1:thread_rows=1 -qp {q}", (63, 50, 39, 23)),
    "av1": ("mp4", "-c:v libaom-av1 -usage realtime -cpu-used 8 -row-mt 0 -threads 1 -aq-mode 0 -crf {q} -qmin {q} -qmax {q}", (63, 58, 47, 25)),
    "vvc": ("266", "-c:v libvvenc -preset faster -threads 1 -pix_fmt yuv420p10le -qp {q}", (60, 46, 38, 27)),
}
TOY_HELD_OUT = ("vvc",)  # written to toy_vvc.csv, never to toy.csv
TOY_ALONE = ("avs2",)  # libxavs2 crashes when two of its encoders share a process
TOY_TINY = dict(sources=("mandel_full", "noise_mid_zoom", "life_classic", "gradient_spiral"), codecs=("h264", "av1", "vvc"), frames=12)
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"]
LOSSLESS = "-c:v libx264 -qp 0 -preset medium -threads 1"  # the references
REF_CHAIN = "scale={w}:{h},format=yuv420p,setsar=1,fps={fps}"  # every reference passes through it
SYNC = "format=yuv420p,settb=1/{fps},setpts=N"  # before VMAF: frames paired by index
VIDEO_EXTS = {".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg",
              ".flv", ".wmv", ".3gp", ".y4m", ".yuv", ".264", ".h264", ".265", ".hevc", ".ivf"}
PROGRESS_EVERY = 10  # seconds between progress lines


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
    """Names of the filters in a lavfi graph: each ,/;-separated part, [labels] and '...' dropped, up to '='."""
    parts = re.split(r"[,;]", re.sub(r"'[^']*'", "", graph))
    return {re.sub(r"\[\w+\]", "", p).split("=")[0].strip() for p in parts} - {""}


def _ffmpeg_names(kind):
    """What `ffmpeg -encoders` or `-filters` lists: the second word of each line (plus harmless legend words)."""
    out = subprocess.run([FFMPEG, "-nostdin", "-hide_banner", f"-{kind}"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if len(line.split()) > 1}


def _check_ffmpeg(codecs, graphs):
    """Raise one error naming every encoder and filter of this build that the ffmpeg lacks."""
    encoders = {re.search(r"-c:v (\S+)", a)[1] for a in [LOSSLESS] + [TOY_CODECS[c][1] for c in codecs]}
    filters = {"libvmaf", "split"}.union(*map(_filters_in, [REF_CHAIN, SYNC, *graphs]))
    missing = {"encoders": sorted(encoders - _ffmpeg_names("encoders")),
               "filters": sorted(filters - _ffmpeg_names("filters"))}
    if any(missing.values()):
        raise RuntimeError(f"toy set: the ffmpeg at {FFMPEG} lacks " + "; ".join(
            f"{k}: {', '.join(v)}" for k, v in missing.items() if v) + ". The toy set needs the ffmpeg "
            "bundled with imageio-ffmpeg (check that IMAGEIO_FFMPEG_EXE does not point to another one).")


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
        if not os.path.exists(os.path.join(cwd, out)) or not os.path.getsize(os.path.join(cwd, out)):
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
    encs = [["-i", ref] + [a for i in g for a in ("-map", "0:v", *args.format(q=levels[i]).split(), *BITEXACT, outs[i])]
            for g in groups]
    # Frames are paired by index (raw .avs2/.266 streams carry no reliable timestamps), and
    # VMAF repeats a short input's last frame, so decoded frames are also counted on the side.
    sync = SYNC.format(fps=TOY_FPS)
    graph = f"[{n}:v]{sync},split={n}" + "".join(f"[r{i}]" for i in range(n))
    for i in range(n):
        graph += f";[{i}:v]{sync},split[d{i}][c{i}];[d{i}][r{i}]libvmaf=log_fmt=json:log_path={work}_{i}.json[v{i}]"
    lab = [a for out in outs for a in ("-i", out)] + ["-i", ref, "-filter_complex", graph]
    lab += [a for i in range(n) for a in ("-map", f"[v{i}]")] + ["-f", "null", "-"]
    lab += [a for i in range(n) for a in ("-map", f"[c{i}]")] + ["-f", "framemd5", f"{work}_frames.txt"]
    for attempt in range(2):  # a failed, empty or short encode is retried once
        problem = _run_and_check(encs, lab, outs, frames, cwd, work)
        if problem is None:
            return [json.load(open(os.path.join(cwd, f"{work}_{i}.json")))["pooled_metrics"]["vmaf"]["mean"] for i in range(n)]
    raise RuntimeError(f"toy set: {problem}")


def _build_source(name, inputs, codecs, frames, size, cwd, work):
    """Render one content's reference and encode and label it with every codec; returns its CSV rows.
    `work`: a prefix for scratch files that no other content shares (names may hold any character)."""
    ref = f"ref/{name}.mp4"
    _make_reference(inputs, ref, frames, size, cwd)
    rows = []
    for codec in codecs:
        ext, _, levels = TOY_CODECS[codec]
        outs = [f"{codec}/{name}_{level}.{ext}" for level in range(1, len(levels) + 1)]
        scores = _encode_and_label(ref, outs, codec, frames, cwd, work=f"{work}_{codec}")
        rows += [dict(path=o, mos=f"{s:.3f}", source=name, codec=codec, level=lvl, reference=ref)
                 for lvl, (o, s) in enumerate(zip(outs, scores), 1)]
    return rows


# -----------------------------------------------------------------------------
# own sources


def _list_sources(sources):
    """A folder's video files (sorted) or a list of paths or dicts -> dicts(name, path, yuv)."""
    if isinstance(sources, (str, os.PathLike)):
        folder = pathlib.Path(sources)
        if not folder.is_dir():
            raise ValueError(f"toy set: sources={str(folder)!r} is not a folder (give a folder or a list of files)")
        sources = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTS and p.is_file())
        if not sources:
            raise ValueError(f"toy set: no video files ({' '.join(sorted(VIDEO_EXTS))}) in {folder}")
    entries = []
    for s in sources:
        s = dict(s) if isinstance(s, dict) else dict(path=s)
        path, yuv = str(s.pop("path", "")), {k: s.pop(k) for k in YUV_KEYS if k in s}
        if not path or s:
            raise ValueError(f"toy set: a source is a path or a dict with path and optionally {', '.join(YUV_KEYS)}; "
                             f"got {'no path' if not path else 'unknown keys ' + ', '.join(s)}")
        entries.append(dict(name=pathlib.Path(path).stem, path=path, yuv=yuv))
    if not entries:
        raise ValueError("toy set: no sources given")
    return entries


def _fingerprint(source):
    """What identifies a source file's contents for the cache: absolute path, size, modification time."""
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
    out = [resize(np.asarray(frame, np.float32).transpose(2, 0, 1), (sh, sw))[:, y : y + h, x : x + w]
           for frame in clip]  # (3, h, w) each
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
        raise ValueError(f"toy set: {len(errors)} of {len(sources)} sources cannot be used, nothing was encoded:\n"
                         + "\n".join(errors))
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(TOY_FPS), "-i"]
    return [raw + [f"work/{i}.rgb"] for i in range(len(sources))]


# -----------------------------------------------------------------------------
# the build


def _progress(log, total):
    """A function to call as contents finish: it logs `done/total` every PROGRESS_EVERY s and at the end."""
    start = last = time.monotonic()

    def step(done):
        nonlocal last
        now = time.monotonic()
        if log and (now - last >= PROGRESS_EVERY or done == total):
            log(f"toy set: {done}/{total} contents, {now - start:.0f} s")
            last = now
    return step


def make_toy_dataset(root, tiny=False, sources=None, codecs=None, frames=None, size=TOY_SIZE, workers=2, log=print):
    """Build (or find cached) the toy set in `root`; return the path of its `toy.csv`.

    tiny=True makes the test-sized built-in variant through the same code. sources: a folder or
    a list of your own videos instead of the built-in contents (module docstring). codecs: names
    in TOY_CODECS (default all; held-out ones only for the `split` test contents, in toy_vvc.csv).
    frames, size (w, h): of every reference and encode (default TOY_FRAMES, or the tiny set's;
    TOY_SIZE). log: called with a start line and progress lines (None: silent).
    The build runs in a temporary folder beside root and is renamed into place when complete; a
    marker holding a hash of the build parameters makes a second call return at once.
    """
    root = pathlib.Path(root)
    codecs = tuple(codecs or (TOY_TINY["codecs"] if tiny else TOY_CODECS))
    frames = frames or (TOY_TINY["frames"] if tiny else TOY_FRAMES)
    size = tuple(size)
    unknown = [c for c in codecs if c not in TOY_CODECS]
    if (tiny and sources is not None) or unknown or frames < 2 or len(size) != 2 or any(s < 16 or s % 2 for s in size):
        raise ValueError(f"toy set: need tiny or sources (not both), codecs from {', '.join(TOY_CODECS)}, frames >= 2 "
                         f"and an even size >= 16; got tiny={tiny}, unknown codecs {unknown}, frames={frames}, size={size}")
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
    done = lambda d: (d / ".complete").exists() and (d / ".complete").read_text() == key
    if done(root):
        return root / "toy.csv"
    _check_ffmpeg(codecs, graphs)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    test = {n for i, n in enumerate(names) if i % 4 == 3}  # every 4th content: each family shows up
    try:
        for d in ("ref", "work", *codecs):
            (tmp / d).mkdir()
        with ThreadPoolExecutor(workers) as pool:  # each job is an ffmpeg process, so threads suffice
            if sources is None:
                inputs = [["-f", "lavfi", "-i", g] for g in graphs]
            else:
                inputs = _prepare_sources(sources, frames, size, tmp, pool)
            if log:
                log(f"toy set: building {len(names)} contents x 4 levels of {' '.join(codecs)} in {root}")
            jobs = [pool.submit(_build_source, n, inp, [c for c in codecs if n in test or c not in TOY_HELD_OUT],
                                frames, size, tmp, f"work/{i}") for i, (n, inp) in enumerate(zip(names, inputs))]
            try:
                step = _progress(log, len(jobs))
                for count, job in enumerate(as_completed(jobs), 1):
                    job.result()  # the first failure raises here
                    step(count)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        rows = [row for job in jobs for row in job.result()]
        for row in rows:
            row["split"] = "test" if row["source"] in test else "train"
        csvs = {"toy.csv": lambda c: c not in TOY_HELD_OUT}
        if set(codecs) & set(TOY_HELD_OUT):
            csvs["toy_vvc.csv"] = lambda c: c in TOY_HELD_OUT
        for name, keep in csvs.items():
            with open(tmp / name, "w", newline="") as f:
                out = csv.DictWriter(f, ["path", "mos", "source", "codec", "level", "split", "reference"])
                out.writeheader()
                out.writerows(r for r in rows if keep(r["codec"]))
        shutil.rmtree(tmp / "work")
        (tmp / ".complete").write_text(key)  # last write: a folder without it is never complete
        if root.exists():
            if done(root):  # another process finished the same build first
                shutil.rmtree(tmp)
                return root / "toy.csv"
            old = tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent)
            os.replace(root, os.path.join(old, "stale"))
            shutil.rmtree(old)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / "toy.csv"
