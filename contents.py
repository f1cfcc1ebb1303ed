"""The synthetic contents of the toy set and of the pre-training corpus: ffmpeg lavfi graphs.

TOY_SOURCES: the toy set's 51 hand-written graphs (fractals, cellular automata, noise textures,
perlin fields, gradients, test patterns, blends, analytic pictures), fixed seeds. draw_contents(n,
seed): n graphs drawn by a seeded generator over parameterised families of the same generator
kinds, drawing texture scale, contrast, colour and motion: the corpus the teacher is pre-trained
on (toy.make_corpus encodes and labels it). No drawn content is a test content of the toy set or
a variant of one (draw_contents says how that is defined and kept). Every graph renders
GRAPH_SIZE frames at FPS; toy.py turns them into lossless references, encodes and VMAF labels.

    graphs = draw_contents(200)          # {"noise_0000": "color=gray:s=176x144:r=24,...", ...}

Needs only numpy.
"""
import math
import numbers

import numpy as np

GRAPH_SIZE, FPS = (176, 144), 24  # every graph's frames; toy.py's references keep both

# name -> lavfi graph. Fixed seeds keep noise sources identical from run to run.
TOY_SOURCES = {
    # fractals: zooms, morphs and rotations
    "mandel_seahorse": "mandelbrot=s=176x144:r=24:start_x=-0.743643887037151:"
        "start_y=0.13182590420533:start_scale=0.02:end_scale=0.01:end_pts=24",
    "mandel_full": "mandelbrot=s=176x144:r=24:start_x=-0.6:start_y=0:start_scale=2.6:end_scale=2.2:"
        "end_pts=24:inner=period",
    "mandel_spiral": "mandelbrot=s=176x144:r=24:start_x=-0.7746806106269039:"
        "start_y=-0.1374168856037867:start_scale=0.003:end_scale=0.002:end_pts=24:"
        "outer=normalized_iteration_count",
    "mandel_morph": "mandelbrot=s=176x144:r=24:start_x=-1.25:start_y=0.02:start_scale=0.2:"
        "end_scale=0.17:end_pts=24:morphamp=0.05:morphxf=3:morphyf=2:inner=convergence",
    "mandel_elephant_rot": "mandelbrot=s=256x256:r=24:start_x=0.2925:start_y=0.016:"
        "start_scale=0.03:end_scale=0.03:maxiter=500,rotate=a=t*0.5:ow=176:oh=144",
    "sierp_carpet": "sierpinski=s=176x144:r=24:type=carpet:seed=3:jump=2,"
        "lutrgb=r=val*0.9:g=val*0.6:b=80+val*0.3",
    "sierp_triangle": "sierpinski=s=176x144:r=24:type=triangle:seed=5:jump=1,negate,"
        "lutrgb=g=val*0.7:b=val*0.4",
    # cellular automata, cells of 2-4 pixels (1-pixel cells look like compression noise themselves)
    "life_classic": "life=s=88x72:r=24:ratio=0.35:seed=11:mold=12:life_color=#ffe070:"
        "death_color=#102040:mold_color=#604020,scale=176:144:flags=neighbor",
    "life_daynight": "life=s=59x48:r=24:ratio=0.5:seed=3:rule=B3678/S34678:life_color=#30c060:"
        "death_color=#202060,scale=176:144:flags=bicubic",
    "life_mold_big": "life=s=44x36:r=24:ratio=0.3:seed=21:mold=30:life_color=#ff4040:"
        "death_color=#f0f0e0:mold_color=#40a0ff,scale=176:144:flags=neighbor,gblur=sigma=1",
    "life_maze_soft": "life=s=44x36:r=24:ratio=0.45:seed=28:rule=B3/S1234:life_color=#e8c070:"
        "death_color=#403020,scale=176:144:flags=bicubic,gblur=sigma=1.5,"
        "noise=alls=12:allf=u:all_seed=28",
    "cellauto_18_big": "cellauto=s=59x48:r=24:rule=18:ratio=0.3:seed=2:full=1,"
        "scale=176:144:flags=neighbor,lutrgb=r=255-val*0.5:g=200:b=val",
    "cellauto_30_soft": "cellauto=s=88x72:r=24:rule=30:ratio=0.5:seed=4:full=1,"
        "scale=176:144:flags=bicubic,lutrgb=r=val*0.4:g=val*0.8",
    # noise textures (fixed seeds) moved by pans, zooms, rotations and shake
    "noise_fine_pan": "color=gray:s=320x240:r=24,noise=alls=100:allf=u:all_seed=1,gblur=sigma=1,"
        "eq=contrast=2,crop=176:144:x=t*40:y=t*20",
    "noise_mid_zoom": "color=gray:s=320x240:r=24,noise=alls=100:allf=u:all_seed=2,gblur=sigma=3,"
        "eq=contrast=5,zoompan=z=1+0.02*on:x=iw/2-iw/zoom/2:y=ih/2-ih/zoom/2:d=1:s=176x144:fps=24",
    "noise_coarse_rot": "color=gray:s=256x256:r=24,noise=alls=100:allf=u:all_seed=3,gblur=sigma=8,"
        "eq=contrast=12,rotate=a=t*0.4:ow=176:oh=144",
    "noise_boil": "color=gray:s=176x144:r=24,noise=alls=100:allf=t+u:all_seed=4,gblur=sigma=2.5,"
        "eq=contrast=5",
    "noise_colour": "color=gray:s=300x300:r=24,noise=alls=100:allf=u:all_seed=5,gblur=sigma=2,"
        "eq=contrast=4:saturation=3,hue=h=t*120,crop=176:144:x=60-t*50:y=t*60",
    "noise_streaks": "color=gray:s=400x144:r=24,noise=alls=100:allf=u:all_seed=6,"
        "gblur=sigma=6:sigmaV=0.5,eq=contrast=8,crop=176:144:x=t*90:y=0,"
        "colorchannelmixer=rr=1:gg=0.8:bb=0.5",
    "noise_faint": "color=0x807060:s=320x240:r=24,noise=alls=30:allf=u:all_seed=7,gblur=sigma=0.7,"
        "crop=176:144:x=t*30:y=40",
    "noise_sharp": "color=gray:s=256x200:r=24,noise=alls=100:allf=u:all_seed=8,gblur=sigma=4,"
        "eq=contrast=10,unsharp=7:7:2.5,scroll=h=0.01:v=0.004,crop=176:144",
    "noise_shake": "color=gray:s=240x200:r=24,noise=alls=100:allf=u:all_seed=25,gblur=sigma=2,"
        "eq=contrast=4,unsharp=5:5:1,crop=176:144:x=32+12*sin(t*19):y=28+9*cos(t*23),hue=s=0",
    "noise_parallax": "color=gray:s=480x144:r=24,noise=alls=100:allf=u:all_seed=11,gblur=sigma=12,"
        "eq=contrast=14,crop=176:144:x=t*20[bg];color=gray:s=480x144:r=24,"
        "noise=alls=100:allf=u:all_seed=12,gblur=sigma=1.2,eq=contrast=3,crop=176:144:x=t*110[fg];"
        "[bg][fg]blend=all_expr='A*0.65+B*0.35',eq=contrast=1.6:brightness=0.1,"
        "colorchannelmixer=rr=0.8:gg=1:bb=0.7",
    "noise_pebbles": "color=gray:s=640x288:r=24,noise=alls=100:allf=u:all_seed=36,gblur=sigma=5,"
        "eq=contrast=25,gblur=sigma=1,scale=320:144,crop=176:144:x=t*50,format=yuv420p,"
        "noise=c0s=20:c0f=u:all_seed=37,colorchannelmixer=rr=0.9:gg=0.75:bb=0.6",
    "noise_bars": "color=gray:s=176x144:r=24,noise=alls=100:allf=u:all_seed=26,gblur=sigma=3,"
        "eq=contrast=6,geq=lum='if(lt(mod(X*cos(T)+Y*sin(T),40),10),235,p(X,Y))':cb=128:cr=128",
    # perlin noise (1/f-like when octaves add up): clouds, foliage, water, marble, terrain
    "perlin_clouds": "perlin=s=176x144:r=24:octaves=6:persistence=0.6:xscale=1.5:yscale=1.5:"
        "tscale=1:random_mode=seed:random_seed=2",
    "perlin_fractal": "perlin=s=176x144:r=24:octaves=6:persistence=0.7:xscale=4:yscale=4:"
        "tscale=0.5:random_mode=seed:random_seed=1,format=gray,format=yuv420p,eq=contrast=2,"
        "pseudocolor=p=viridis",
    "perlin_fine": "perlin=s=176x144:r=24:octaves=3:persistence=0.8:xscale=16:yscale=12:tscale=2:"
        "random_mode=seed:random_seed=3,format=gray,format=yuv420p,eq=contrast=2,"
        "pseudocolor=p=turbo",
    "perlin_marble": "perlin=s=176x144:r=24:octaves=5:persistence=0.7:xscale=3:yscale=1:tscale=0.4:"
        "random_mode=seed:random_seed=4,format=gray,lutyuv=y=128+127*sin(val/9),format=yuv420p,"
        "pseudocolor=p=inferno",
    "perlin_marble_pan": "perlin=s=320x144:r=24:octaves=6:persistence=0.65:xscale=2:yscale=4:"
        "tscale=0:random_mode=seed:random_seed=29,format=gray,lutyuv=y=128+110*sin(val/6),"
        "format=yuv420p,pseudocolor=p=cividis,crop=176:144:x=t*60",
    "perlin_poster": "perlin=s=176x144:r=24:octaves=3:persistence=0.5:xscale=2:yscale=2:tscale=0.8:"
        "random_mode=seed:random_seed=5,format=gray,eq=contrast=2,lutyuv=y=floor(val/40)*40,"
        "format=yuv420p,pseudocolor=p=cool",
    "perlin_terrain": "perlin=s=264x216:r=24:octaves=6:persistence=0.65:xscale=2:yscale=2:tscale=0:"
        "random_mode=seed:random_seed=6,format=gray,format=yuv420p,eq=contrast=2.5,"
        "pseudocolor=p=cividis,zoompan=z=1.2+0.01*on:x=on*3:y=on*2:d=1:s=176x144:fps=24",
    "perlin_bark": "perlin=s=176x288:r=24:octaves=5:persistence=0.6:xscale=12:yscale=1:tscale=0:"
        "random_mode=seed:random_seed=38,format=gray,eq=contrast=3,format=yuv420p,"
        "colorchannelmixer=rr=0.7:gg=0.5:bb=0.3,crop=176:144:x=0:y=t*60",
    "perlin_foliage": "perlin=s=176x144:r=24:octaves=7:persistence=0.75:xscale=5:yscale=5:"
        "tscale=1.5:random_mode=seed:random_seed=21,format=gray,eq=contrast=3.5,format=yuv420p,"
        "colorchannelmixer=rr=0.35:gg=0.9:bb=0.25",
    "perlin_water": "perlin=s=176x144:r=24:octaves=4:persistence=0.5:xscale=8:yscale=20:tscale=6:"
        "random_mode=seed:random_seed=23,format=gray,eq=contrast=2.5,format=yuv420p,"
        "pseudocolor=p=blues",
    "perlin_skyline": "gradients=s=176x144:r=24:c0=0x3060c0:c1=0xf0d0a0:x0=88:y0=0:x1=88:y1=143:"
        "n=2:speed=0,format=rgb24[sky];perlin=s=176x144:r=24:octaves=5:persistence=0.6:xscale=1:"
        "yscale=4:tscale=0.3:random_mode=seed:random_seed=22,format=gray,"
        "geq=lum='if(gt(Y/H*255+p(X,Y)-128,200),0,255)',format=rgb24[m];"
        "[sky][m]blend=all_mode=multiply,format=gbrp,format=yuv420p,noise=c0s=16:c0f=u:all_seed=35",
    # smooth fields (gradients: colours and points given, its seed option is not honoured)
    "gradient_linear": "gradients=s=176x144:r=24:n=4:c0=0x3050a0:c1=0x60a0e0:c2=0xe0e0f0:"
        "c3=0x8040a0:x0=0:y0=0:x1=175:y1=143:speed=0.03:type=linear,format=yuv420p,"
        "noise=c0s=22:c0f=u:all_seed=31",
    "gradient_spiral": "gradients=s=176x144:r=24:n=3:c0=0x204080:c1=0xe0a040:c2=0x60c060:x0=20:"
        "y0=10:x1=150:y1=130:speed=0.05:type=spiral,format=yuv420p,noise=c0s=22:c0f=u:all_seed=32",
    "gradient_grain": "gradients=s=176x144:r=24:n=2:c0=0xd02040:c1=0x302090:x0=120:y0=80:x1=10:"
        "y1=10:speed=0.02:type=radial,format=yuv420p,noise=alls=14:allf=u:all_seed=24",
    "blobs": "color=gray:s=352x288:r=24,noise=alls=100:allf=u:all_seed=6,gblur=sigma=10,"
        "eq=contrast=30,scroll=h=0.004:v=0.003,scale=176:144,pseudocolor=p=plasma",
    # test patterns
    "testsrc2_pan": "testsrc2=s=352x288:r=24,crop=176:144:x=20+t*60:y=40+t*30",
    "colorspectrum_scroll": "colorspectrum=s=176x144:r=24:type=all,scroll=h=0.01,format=yuv420p,"
        "noise=alls=16:allf=u:all_seed=34",
    "smpte_rot": "smptehdbars=s=352x288:r=24,rotate=a=0.3+t*0.2:ow=176:oh=144",
    # mixtures of two generators
    "blend_mandel_zone": "mandelbrot=s=176x144:r=24:start_scale=1.5:end_scale=1.2:end_pts=24[a];"
        "zoneplate=s=176x144:r=24:kx2=30:ky2=30:kt2=2,format=rgb24[b];"
        "[a][b]blend=all_mode=multiply",
    "blend_life_perlin": "life=s=88x72:r=24:ratio=0.2:seed=5:mold=20,scale=176:144:flags=neighbor,"
        "format=rgb24[a];perlin=s=176x144:r=24:octaves=4:xscale=3:yscale=3:random_mode=seed:"
        "random_seed=6,format=rgb24[b];[a][b]blend=all_mode=screen",
    "blend_noise_gradient": "gradients=s=176x144:r=24:n=3:c0=0x40c040:c1=0xc040c0:c2=0x40a0c0:x0=0:"
        "y0=143:x1=175:y1=0:speed=0.04,format=rgb24[a];color=gray:s=176x144:r=24,"
        "noise=alls=100:allf=u:all_seed=8,gblur=sigma=1.5,eq=contrast=3,format=rgb24[b];"
        "[a][b]blend=all_mode=overlay",
    "blend_carpet_clouds": "sierpinski=s=176x144:r=24:type=carpet:seed=8,format=rgb24[a];"
        "perlin=s=176x144:r=24:octaves=5:xscale=2:yscale=2:random_mode=seed:random_seed=9,"
        "format=gray,format=yuv420p,pseudocolor=p=magma,format=rgb24[b];"
        "[a][b]blend=all_mode=difference",
    "carpet_grain": "sierpinski=s=176x144:r=24:type=carpet:seed=27:jump=1,format=yuv420p,"
        "noise=alls=25:allf=t+u:all_seed=27,lutrgb=r=val:g=val*0.85:b=val*0.6",
    # analytic pictures
    "geq_waves": "nullsrc=s=176x144:r=24,geq=lum='128+90*sin(X/7+T*4)*cos(Y/9-T*2)':"
        "cb='128+60*sin(X/30+T)':cr='128+60*cos(Y/25)',noise=c0s=20:c0f=u:all_seed=33",
    "geq_checker_warp": "nullsrc=s=176x144:r=24,"
        "geq=lum='if(mod(floor((X+8*sin(Y/10+T*3))/12)+floor(Y/12),2),220,30)':cb=100:cr=170",
    "geq_discs": "nullsrc=s=176x144:r=24,geq=lum='if(lt(hypot(X-60-40*T,Y-70),30),200,"
        "if(lt(hypot(X-130,Y-50-30*T),22),40,110+20*sin(X/3)*sin(Y/4)))':cb='if(lt(hypot(X-60-40*T,"
        "Y-70),30),90,140)':cr='if(lt(hypot(X-130,Y-50-30*T),22),200,120)'",
}



# -----------------------------------------------------------------------------
# the pre-training corpus: contents drawn from parameterised families

CORPUS_SEEDS = (1000, 2**31)  # every seed the corpus draws is in here; the toy set's are below 40
PAN_SECONDS = 2  # a pan's canvas lasts this long (48 frames); in a longer clip it stops at the edge
NEAR = 2.0  # a draw within this factor of a test content on every key parameter is a variant
MAX_REDRAWS = 1000  # a family that draws this many variants in a row is broken

# The toy set's 12 test contents (index % 4 == 3) as the corpus's families describe them, read
# off their graphs above, in frame pixels: family, key parameters. A draw of the same family is a
# variant of one if each of its parameters is near: a word equal, a number within a factor NEAR
# (0 only near 0), a (lo, hi) pair containing it, a set holding it. Unlisted things (seeds,
# colours, flips, start angles, grain, the blur's shape) do not make a draw another content; the
# motion (_camera's words, or boil) does, as in the toy set's own split: noise_sharp, a training
# content, is noise_coarse_rot's texture scrolled instead of turned.
TEST_CONTENTS = {
    # centre within one view (0.2) of -1.25+0.02i or of its mirror image (the set is symmetric)
    "mandel_morph": ("mandel", dict(x=(-1.45, -1.05), y=(-0.22, 0.22), scale=0.2)),
    "life_classic": ("life", dict(rule="B3/S23", cell=2, ratio=0.35)),  # 88x72 cells on 176x144
    # rules up to mirror image and negation; 90 and 146 draw 18's nested triangles from noise
    "cellauto_18_big": ("cellauto", dict(rule={"18", "90", "146"}, cell=3, ratio=0.3)),
    "noise_coarse_rot": ("noise", dict(motion="rotate", sigma=8, contrast=12, speed=0.4)),
    # alls=30 on alls=100's scale: contrast 0.3
    "noise_faint": ("noise", dict(motion="pan", sigma=0.7, contrast=0.3, speed=30)),
    # blurred at twice the frame size, then halved: sigma 5 -> 2.5
    "noise_pebbles": ("noise", dict(motion="pan", sigma=2.5, contrast=25, speed=50)),
    "perlin_fine": ("perlin", dict(motion="still", octaves=3, xscale=16, yscale=12, tscale=2)),
    # 2 features across 264 pixels seen through a 1.2 zoom: 1.67 across the frame
    "perlin_terrain": ("perlin", dict(motion="zoom", octaves=6, xscale=1.67, yscale=1.67,
                                      tscale=0)),
    "perlin_skyline": ("blend", dict(layers="gradient + perlin")),  # perlin hills on a gradient sky
    # 352x288 halved: sigma 10 -> 5; scrolled 0.004 x 0.003 of the size a frame: 20 px/s
    "blobs": ("noise", dict(motion="pan", sigma=5, contrast=30, speed=20)),
    "blend_mandel_zone": ("blend", dict(layers="mandel + zoneplate")),
    "carpet_grain": ("sierp", dict(type="carpet", jump=1)),
}


def _near(value, ref):
    """Is a draw's key parameter `value` near a test content's `ref` (as TEST_CONTENTS says)?"""
    if isinstance(ref, str):
        return value == ref
    if isinstance(ref, (set, frozenset)):
        return value in ref
    if isinstance(ref, tuple):
        return ref[0] <= value <= ref[1]
    return value == ref or (value * ref > 0 and max(value / ref, ref / value) <= NEAR)


def _variant_of(family, key):
    """The test content that a draw (its family and key parameters) is a variant of, or None. A
    blend is also a variant of whatever one of its two layers is a variant of."""
    for part in key.get("parts", ()):
        if _variant_of(*part):
            return _variant_of(*part)
    for name, (fam, ref) in TEST_CONTENTS.items():
        if fam == family and all(_near(key[k], v) for k, v in ref.items()):
            return name
    return None


def _logu(rng, lo, hi):
    """Log-uniform in [lo, hi] (each octave of a scale or speed as likely), 3 significant digits."""
    return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}")


def _seed(rng):
    return int(rng.integers(*CORPUS_SEEDS))


def _hex(rgb):
    return "0x{:02x}{:02x}{:02x}".format(*rgb)


def _dark_light(rng):
    """Two random colours, one dark and one light (they differ in luma, the one plane VMAF
    sees), in random order."""
    dark, light = rng.integers(0, 110, 3), rng.integers(146, 256, 3)
    return (dark, light) if rng.random() < 0.5 else (light, dark)


def _chain(*filters):
    """Filters joined into one lavfi chain, the empty ones (options not drawn) left out."""
    return ",".join(f for f in filters if f)


PALETTES = ("magma", "inferno", "plasma", "viridis", "turbo", "cividis", "cool", "heat", "fiery",
            "blues", "green", "helix", "spectral", "solar")


def _colour(rng):
    """Colour for a grey picture: none, a palette (pseudocolor) or a tint (channel gains)."""
    palette, gains = rng.choice(PALETTES), rng.uniform(0.2, 1, 3)
    return [
        "",
        f"format=gray,format=yuv420p,pseudocolor=p={palette}",
        "colorchannelmixer=rr={:.2f}:gg={:.2f}:bb={:.2f}".format(*gains),
    ][rng.integers(3)]


def _two_colours(rng):
    """A binary picture's black and white mapped to a dark and a light colour (lutrgb)."""
    lo, hi = _dark_light(rng)
    return "format=rgb24,lutrgb=" + ":".join(f"{c}={a}{(b - a) / 255:+.3f}*val"
                                            for c, a, b in zip("rgb", lo, hi))


def _grain(rng, p=0.3):
    """With probability p, grain on the luma: new every frame (costly to code) or fixed."""
    if rng.random() >= p:
        return ""
    flags = "t+u" if rng.random() < 0.6 else "u"
    return f"format=yuv420p,noise=c0s={rng.integers(4, 26)}:c0f={flags}:all_seed={_seed(rng)}"


MOVES = ("still", "pan", "pan", "zoom", "rotate", "shake")


def _camera(rng, moves=MOVES):
    """A camera move drawn from `moves`: (motion, speed, canvas (w, h), k, filter). The family
    paints its picture on the canvas at k canvas pixels per frame pixel; `filter` films the
    176x144 frame from it. speed: px/s for pan, amplitude in px for shake, rad/s for rotate,
    zoom factor gained per second for zoom."""
    w, h = GRAPH_SIZE
    motion = str(rng.choice(moves))
    if motion == "pan":
        speed, angle = _logu(rng, 4, 120), rng.uniform(0, 2 * math.pi)
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        dx, dy = (2 * math.ceil(abs(v) * PAN_SECONDS / 2) for v in (vx, vy))  # even sizes
        x0, y0 = dx if vx < 0 else 0, dy if vy < 0 else 0  # start at the side it moves from
        crop = f"crop={w}:{h}:x={x0}{vx:+.1f}*t:y={y0}{vy:+.1f}*t"
        return motion, speed, (w + dx, h + dy), 1, crop
    if motion == "zoom":
        speed, inwards = _logu(rng, 0.05, 0.5), rng.random() < 0.5
        step = f"{speed / FPS:.4g}*on"  # zoompan's z: the zoom at output frame `on`
        z = f"1+{step}" if inwards else f"'max(1,{1 + speed * PAN_SECONDS:.3g}-{step})'"
        return motion, speed, (264, 216), 1.5, (f"zoompan=z={z}:x=iw/2-iw/zoom/2:y=ih/2-ih/zoom/2:"
                                                f"d=1:s={w}x{h}:fps={FPS}")
    if motion == "rotate":  # a 232 px square covers the frame at every angle
        speed, a0, sign = _logu(rng, 0.1, 1.2), rng.uniform(0, 2 * math.pi), rng.choice([-1, 1])
        return motion, speed, (232, 232), 1, f"rotate=a={a0:.2f}{sign * speed:+.3g}*t:ow={w}:oh={h}"
    if motion == "shake":
        a, (f1, f2) = math.ceil(_logu(rng, 2, 12)), rng.uniform(6, 30, 2)
        return motion, a, (w + 2 * a, h + 2 * a), 1, (f"crop={w}:{h}:x={a}+{a}*sin({f1:.1f}*t):"
                                                      f"y={a}+{a}*cos({f2:.1f}*t)")
    return "still", 0, (w, h), 1, ""


# Each family draws one content: (key parameters, lavfi graph of one chain, GRAPH_SIZE frames).


def _noise(rng):
    """Uniform noise blurred to a texture of `sigma` frame pixels and stretched by `contrast`,
    filmed by a camera move or boiling (new noise every frame); grey, tinted, in a palette or in
    colour; perhaps streaked, sharpened or grained."""
    sigma = _logu(rng, 0.5, 12)
    contrast = float(f"{sigma * _logu(rng, 0.3, 6):.3g}")  # grey levels' std ~13 contrast / sigma
    boil = rng.random() < 0.15
    motion, speed, (w, h), k, move = _camera(rng, ("still",) if boil else MOVES)
    blur = f"gblur=sigma={sigma * k:.3g}"
    if rng.random() < 0.2:
        blur += f":sigmaV={sigma * k * _logu(rng, 0.05, 0.5):.3g}"  # streaks
    sharpen = f"unsharp=5:5:{rng.uniform(0.5, 2.5):.2f}" if rng.random() < 0.25 else ""
    hue = f"eq=saturation={rng.uniform(1.5, 4):.2f},hue=h={rng.uniform(-150, 150):.0f}*t"
    graph = _chain(f"color=gray:s={w}x{h}:r={FPS}",
                   f"noise=alls=100:allf={'t+u' if boil else 'u'}:all_seed={_seed(rng)}", blur,
                   f"eq=contrast={contrast}", sharpen, hue if rng.random() < 0.2 else _colour(rng),
                   move, _grain(rng))
    return dict(motion="boil" if boil else motion, sigma=sigma, contrast=contrast,
                speed=speed), graph


def _perlin(rng):
    """Perlin noise: `octaves` layers of ever finer detail, `xscale` x `yscale` features across
    the frame, changing at `tscale` (0: a still field, filmed by a camera move); toned
    (contrast, marble bands, posterised) and coloured."""
    octaves, persistence = int(rng.integers(1, 9)), round(rng.uniform(0.35, 0.85), 2)
    xscale = _logu(rng, 0.6, 24)
    yscale = float(f"{xscale * _logu(rng, 0.3, 3):.3g}")
    tscale = 0 if rng.random() < 0.35 else _logu(rng, 0.1, 8)
    motion, speed, (w, h), k, move = _camera(rng, MOVES if tscale == 0 else ("still", "zoom"))
    band, step = rng.uniform(3, 12), rng.integers(20, 64)
    tone = ["", f"eq=contrast={rng.uniform(1, 3.5):.2f}",
            f"lutyuv=y=128+{rng.integers(60, 128)}*sin(val/{band:.1f})",
            f"lutyuv=y=floor(val/{step})*{step}"][rng.integers(4)]
    graph = _chain(f"perlin=s={w}x{h}:r={FPS}:octaves={octaves}:persistence={persistence}:"
                   f"xscale={xscale * w / k / GRAPH_SIZE[0]:.4g}:"
                   f"yscale={yscale * h / k / GRAPH_SIZE[1]:.4g}:tscale={tscale}:"
                   f"random_mode=seed:random_seed={_seed(rng)}",
                   "format=gray", tone, _colour(rng), move, _grain(rng))
    return dict(motion=motion, octaves=octaves, xscale=xscale, yscale=yscale, tscale=tscale,
                speed=speed), graph


MANDEL_SPOTS = (  # well-known places on the boundary of the Mandelbrot set: x, y of x + iy
    (-0.7436438870, 0.1318259042),  # seahorse valley
    (0.2925, 0.0160),  # elephant valley
    (-0.1011, 0.9563),  # a Misiurewicz point: spirals of spirals
    (-1.7548776662, 0.0),  # the largest minibrot on the needle
    (-0.7746806106, -0.1374168856),  # double spirals
    (0.3602404434, -0.6413130610),
    (-0.0452407411, 0.9868162204),
    (0.4325398676, 0.2261186760),
    (-0.1607013500, 1.0375665000),
    (-1.9854, 0.0),  # a minibrot on the antenna
)


def _mandel(rng):
    """A view of the Mandelbrot set `scale` wide around a well-known spot of its boundary (or
    the whole set), zooming in, sometimes morphing or turning; one of its colourings, turned."""
    if rng.random() < 0.15:
        x, y, scale = rng.uniform(-0.9, -0.3), rng.uniform(-0.3, 0.3), _logu(rng, 1, 2.5)
    else:
        (x, y), scale = MANDEL_SPOTS[rng.integers(len(MANDEL_SPOTS))], _logu(rng, 1e-4, 0.3)
        x, y = x + scale * rng.uniform(-0.5, 0.5), y + scale * rng.uniform(-0.5, 0.5)
    x, y = float(f"{x:.10g}"), float(f"{y:.10g}")
    end = float(f"{scale * _logu(rng, 0.5, 1):.3g}")  # reached after 24 frames
    inner = rng.choice(["black", "period", "convergence", "mincol"])
    outer = rng.choice(["iteration_count", "normalized_iteration_count", "outz"])
    morph = ":morphamp={:.3g}:morphxf={:.2f}:morphyf={:.2f}".format(
        _logu(rng, 0.01, 0.1), *rng.uniform(0.5, 4, 2)) if rng.random() < 0.2 else ""
    motion, speed, (w, h), _, move = _camera(rng, ("still", "still", "rotate"))
    hue = f"hue=h={rng.integers(360)}" if rng.random() < 0.5 else ""
    graph = _chain(f"mandelbrot=s={w}x{h}:r={FPS}:start_x={x}:start_y={y}:start_scale={scale}:"
                   f"end_scale={end}:end_pts=24:maxiter={int(_logu(rng, 100, 1500))}:"
                   f"inner={inner}:outer={outer}{morph}", move, hue)
    return dict(motion=motion, x=x, y=y, scale=scale), graph


# Conway's, HighLife, Day & Night, Maze, Morley, 34 Life, DryLife, Replicator, Life without Death
LIFE_RULES = ("B3/S23", "B36/S23", "B3678/S34678", "B3/S12345", "B368/S245", "B34/S34", "B37/S23",
              "B1357/S1357", "B3/S012345678")


def _life(rng):
    """A Game-of-Life-like automaton (`rule`) of `cell`-pixel cells, `ratio` of them alive at
    first, perhaps with mold (dead cells fading), scaled up sharp or soft, coloured."""
    rule, cell = str(rng.choice(LIFE_RULES)), float(rng.choice([2, 2.5, 3, 4, 5, 6, 8]))
    ratio = round(rng.uniform(0.2, 0.6), 2)  # fewer die out within a second
    alive, dead = _dark_light(rng)
    mold = f":mold={rng.integers(5, 60)}:mold_color={_hex(rng.integers(0, 256, 3))}"
    mold = mold if rng.random() < 0.4 else ""
    motion, speed, (w, h), k, move = _camera(rng, ("still", "still", "pan", "zoom", "rotate"))
    flags = rng.choice(["neighbor", "neighbor", "bicubic", "bilinear"])
    blur = f"gblur=sigma={rng.uniform(0.5, 2):.2f}" if rng.random() < 0.25 else ""
    graph = _chain(f"life=s={round(w / k / cell)}x{round(h / k / cell)}:r={FPS}:rule={rule}:"
                   f"ratio={ratio}:seed={_seed(rng)}:life_color={_hex(alive)}:"
                   f"death_color={_hex(dead)}{mold}", f"scale={w}:{h}:flags={flags}", blur, move,
                   _grain(rng))
    return dict(motion=motion, rule=rule, cell=cell, ratio=ratio), graph


CA_RULES = (18, 22, 26, 30, 45, 54, 57, 60, 62, 73, 90, 105, 106, 110, 122, 126, 146, 150, 154, 184)


def _ca_class(rule):
    """An elementary automaton's rule up to mirror image and black-white swap (the same pictures
    flipped or negated): the smallest of the (up to) four equivalent rule numbers, as a word."""
    def mirror(r):  # neighbourhood (left, centre, right) -> (right, centre, left)
        return sum(((r >> n) & 1) << int(f"{n:03b}"[::-1], 2) for n in range(8))

    def swap(r):  # new(cells) = not old(not cells)
        return sum((1 - ((r >> (7 - n)) & 1)) << n for n in range(8))
    return str(min(rule, mirror(rule), swap(rule), mirror(swap(rule))))


def _cellauto(rng):
    """An elementary cellular automaton (`rule`) of `cell`-pixel cells filling the frame and
    scrolling, `ratio` of the first row alive; two-coloured, scaled up sharp or soft."""
    rule, cell = int(rng.choice(CA_RULES)), float(rng.choice([2, 2.5, 3, 4, 5, 6, 8]))
    ratio = round(rng.uniform(0.1, 0.6), 2)
    motion, speed, (w, h), k, move = _camera(rng, ("still", "still", "zoom"))
    flags = rng.choice(["neighbor", "neighbor", "bicubic"])
    graph = _chain(f"cellauto=s={round(w / k / cell)}x{round(h / k / cell)}:r={FPS}:"
                   f"rule={rule}:ratio={ratio}:seed={_seed(rng)}:full=1",
                   f"scale={w}:{h}:flags={flags}", _two_colours(rng), move, _grain(rng))
    return dict(motion=motion, rule=_ca_class(rule), cell=cell, ratio=ratio), graph


def _sierp(rng):
    """A Sierpinski carpet or triangle wandering by up to `jump` pixels a frame, two-coloured."""
    kind, jump = str(rng.choice(["carpet", "triangle"])), int(rng.integers(1, 7))
    motion, speed, (w, h), _, move = _camera(rng, ("still", "still", "zoom", "rotate"))
    graph = _chain(f"sierpinski=s={w}x{h}:r={FPS}:type={kind}:seed={_seed(rng)}:jump={jump}",
                   "negate" if rng.random() < 0.3 else "", _two_colours(rng), move,
                   _grain(rng, 0.4))
    return dict(motion=motion, type=kind, jump=jump), graph


GRADIENTS = ("linear", "radial", "circular", "spiral", "square")


def _gradient(rng):
    """A smooth field of 2-8 colours (linear, radial, circular, spiral or square) turning at
    `speed`: flat areas, where banding and blocking show, so often grained or posterised."""
    n, kind = int(rng.integers(2, 9)), str(rng.choice(GRADIENTS))
    colours = ":".join(f"c{i}={_hex(rng.integers(0, 256, 3))}" for i in range(n))
    (x0, x1), (y0, y1) = rng.integers(0, GRAPH_SIZE[0], 2), rng.integers(0, GRAPH_SIZE[1], 2)
    step = rng.integers(6, 24)
    poster = f"lutyuv=y=floor(val/{step})*{step}" if rng.random() < 0.2 else ""
    graph = _chain(f"gradients=s={GRAPH_SIZE[0]}x{GRAPH_SIZE[1]}:r={FPS}:n={n}:{colours}:"
                   f"x0={x0}:y0={y0}:x1={x1}:y1={y1}:speed={_logu(rng, 0.005, 0.1)}:type={kind}",
                   "format=yuv420p", poster, _grain(rng, 0.6))
    return dict(motion="still", type=kind), graph


def _geq(rng):
    """An analytic picture drawn by geq: waves, a warped checkerboard, rings, turning stripes or
    a disc crossing a texture; smooth or hard-edged, coloured by slow chroma waves."""
    kind = str(rng.choice(["waves", "checker", "rings", "stripes", "disc"]))
    a, p, q, w = rng.integers(30, 110), rng.uniform(2, 30), rng.uniform(2, 30), rng.uniform(-6, 6)
    (cx, cy), (vx, vy) = rng.integers(0, GRAPH_SIZE), rng.uniform(-60, 60, 2)
    s, r = rng.integers(6, 30), rng.integers(10, 50)
    wave = {"waves": f"sin(X/{p:.1f}+T*{w:.1f})*cos(Y/{q:.1f}-T*{w / 2:.1f})",
            "checker": f"sin(PI*(X+{p:.1f}*sin(Y/{q:.1f}+T*{w:.1f}))/{s})*sin(PI*Y/{s})",
            "rings": f"sin(hypot(X-{cx},Y-{cy})/{p:.1f}-T*{w:.1f})",
            "stripes": f"sin((X*cos(T*{w / 4:.2f})+Y*sin(T*{w / 4:.2f}))/{p:.1f})",
            "disc": f"sin(X/{p:.1f})*sin(Y/{q:.1f})"}[kind]
    hard = kind == "checker" or rng.random() < 0.4
    lum = f"if(gt({wave},0),{128 + a},{128 - a})" if hard else f"128+{a}*{wave}"
    if kind == "disc":
        lum = (f"if(lt(hypot(X-({cx}{vx:+.0f}*T),Y-({cy}{vy:+.0f}*T)),{r}),"
               f"{rng.integers(0, 256)},{lum})")
    cb, cr = rng.integers(40, 216, 2)
    chroma = (f"cb='128+{a // 2}*sin(X/{q * 3:.0f}+T)':cr='128+{a // 2}*cos(Y/{p * 3:.0f})'"
              if rng.random() < 0.5 else f"cb={cb}:cr={cr}")
    graph = _chain(f"nullsrc=s={GRAPH_SIZE[0]}x{GRAPH_SIZE[1]}:r={FPS}",
                   f"geq=lum='{lum}':{chroma}", _grain(rng))
    return dict(motion="still", kind=kind), graph


PATTERNS = ("testsrc2", "smptehdbars", "smptebars", "colorspectrum", "zoneplate", "rgbtestsrc",
            "pal100bars")


def _pattern(rng):
    """A test pattern (testsrc2, colour bars, a colour spectrum, a zone plate of random ring
    density) filmed by a camera move, perhaps grained."""
    source = str(rng.choice(PATTERNS))
    motion, speed, (w, h), _, move = _camera(rng)
    k2, stretch, kt2 = rng.integers(5, 80), rng.uniform(0.5, 2), rng.integers(0, 8)
    spectrum = rng.choice(["black", "white", "all"])
    options = {"zoneplate": f":kx2={k2}:ky2={int(k2 * stretch)}:kt2={kt2}",
               "colorspectrum": f":type={spectrum}"}.get(source, "")
    graph = _chain(f"{source}=s={w}x{h}:r={FPS}{options}", move, _grain(rng, 0.4))
    return dict(motion=motion, source=source), graph


LAYERS = ("noise", "perlin", "mandel", "life", "cellauto", "sierp", "gradient", "geq", "pattern")
BLEND_MODES = ("multiply", "screen", "overlay", "difference", "average", "lighten", "darken",
               "softlight", "exclusion", "grainmerge")


def _blend(rng):
    """Two pictures, each drawn by one of the families above, mixed by a blend mode: texture on
    texture, a pattern through a fractal, an automaton over clouds. `layers` names the two
    (a pattern by its source); `parts` keeps their own key parameters."""
    (fa, (ka, a)), (fb, (kb, b)) = [(str(f), FAMILIES[f](rng)) for f in rng.choice(LAYERS, 2)]
    layers = " + ".join(sorted([ka.get("source", fa), kb.get("source", fb)]))
    graph = (f"{a},format=rgb24[a];{b},format=rgb24[b];[a][b]blend=all_mode="
             f"{rng.choice(BLEND_MODES)}:all_opacity={rng.uniform(0.5, 1):.2f}")
    return dict(layers=layers, parts=[(fa, ka), (fb, kb)]), graph


FAMILIES = dict(noise=_noise, perlin=_perlin, mandel=_mandel, life=_life, cellauto=_cellauto,
                sierp=_sierp, gradient=_gradient, geq=_geq, pattern=_pattern, blend=_blend)
# draw i is of family CYCLE[i % 14]: each prefix of the corpus mixes the families alike, noise
# textures and perlin fields (the most varied, as in the toy set) and blends most often
CYCLE = ("noise", "perlin", "mandel", "blend", "life", "noise", "geq", "perlin", "cellauto",
         "pattern", "noise", "blend", "sierp", "gradient")


def _draw(i, seed):
    """Draw i of the corpus of `seed`: (family, key parameters, graph, draws refused before it).
    Its own generator, seeded by (seed, i), makes it independent of how many are drawn."""
    family = CYCLE[i % len(CYCLE)]
    rng = np.random.default_rng([seed, i])
    for refused in range(MAX_REDRAWS):
        key, graph = FAMILIES[family](rng)
        if graph not in TOY_SOURCES.values() and _variant_of(family, key) is None:
            return family, key, graph, refused
    raise RuntimeError(f"corpus: {MAX_REDRAWS} draws of {family} in a row were toy contents or "
                       "variants of test contents")


def draw_contents(n, seed=0):
    """The first n contents of the corpus of `seed`: {name: lavfi graph}, names like `noise_0042`.

    Each graph is one of the families above with its parameters drawn, rendering GRAPH_SIZE at
    FPS like TOY_SOURCES' graphs. Deterministic, and draw i depends on (seed, i) only: the
    first 10 of draw_contents(100) are draw_contents(10).

    Disjoint from the toy set's 12 test contents, in three ways: (a) no graph is one of
    TOY_SOURCES; (b) every seed (noise all_seed, life, cellauto and sierpinski seed, perlin
    random_seed) is drawn from CORPUS_SEEDS, a range holding none of the toy set's seeds; (c) a
    draw that is a variant of a test content (same family, every key parameter in TEST_CONTENTS
    within a factor NEAR = 2 of the test content's; a changed seed, colour, flip or start angle
    does not count as different) is refused and drawn again from the same generator. The 39
    training contents may be near: the student sees those anyway.
    """
    for what, v, least in (("n", n, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least:
            raise ValueError(f"corpus: {what} must be an integer >= {least}, got {v!r}")
    draws = [_draw(i, seed) for i in range(n)]
    return {f"{family}_{i:04d}": graph for i, (family, _, graph, _) in enumerate(draws)}


