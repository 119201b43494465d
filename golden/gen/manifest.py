"""golden/gen/manifest.py — golden/MANIFEST, shared by every generator.

The file: its comment lines first, then one line per golden file,
`path script seed sha256`, sorted. A generator replaces the lines of the files
in its own folder (golden/<component>/) and keeps everybody else's.

    import manifest
    manifest.replace_folder("golden/kd", ["golden/kd/a.safetensors golden/gen/kd.py 7 <sha256>", ...])

Paths in the lines are relative to the repository root; the MANIFEST is the
one beside this script's folder, whatever the working directory.
"""
import os

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "MANIFEST")
HEADER = ["# golden/MANIFEST: one line per golden file: path script seed sha256",
          "# regenerate a file with its script (see golden/gen/README.md)"]


def replace_folder(folder, lines):
    """Replaces the MANIFEST lines of the files under `folder` by `lines`."""
    prefix = folder.rstrip("/") + "/"
    comments, kept = [], []
    if os.path.exists(PATH):
        with open(PATH) as f:
            for line in f.read().splitlines():
                if line.startswith("#"):
                    comments.append(line)
                elif line and not line.startswith(prefix):
                    kept.append(line)
    with open(PATH, "w") as f:
        f.write("\n".join((comments or HEADER) + sorted(kept + list(lines))) + "\n")
