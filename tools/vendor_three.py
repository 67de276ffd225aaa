"""Vendor three.js from the npm registry into the operator page's files (run by hand, with npm).

    python tools/vendor_three.py [VERSION]

Fetches the package with ``npm pack``, checks it against the registry's integrity
hash, copies the two minified ES modules the page imports, the glTF loader the object
viewer imports (and its two helpers) and the MIT licence into
``bridge/web/static/vendor/three/``, and writes ``SOURCE.json`` (version, the
tarball's integrity, each file's SHA-256 and where in the package it comes from). ``tests/test_web_page.py`` checks the
files still match it, so an accidental edit of vendored code fails the tests.
0.184.0 is the newest release that ships minified builds (0.186 and later ship only
the unminified modules, three times the page weight).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.184.0"
FILES = {"build/three.core.min.js": "three.core.min.js", "build/three.module.min.js": "three.module.min.js",
         "LICENSE": "LICENSE",
         # the object viewer's glTF loader (fetched when the first object arrives) and what it imports
         "examples/jsm/loaders/GLTFLoader.js": "GLTFLoader.js",
         "examples/jsm/utils/BufferGeometryUtils.js": "BufferGeometryUtils.js",
         "examples/jsm/utils/SkeletonUtils.js": "SkeletonUtils.js"}  # fmt: skip
NOTE = "GLTFLoader.js imports ../utils/*.js: index.html's import map sends /ui/vendor/utils/ to this folder"
TARGET = Path(__file__).resolve().parent.parent / "bridge/web/static/vendor/three"


def main(version: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        integrity = subprocess.run(
            ["npm", "view", f"three@{version}", "dist.integrity"], capture_output=True, text=True, check=True
        ).stdout.strip()
        name = (
            subprocess.run(["npm", "pack", f"three@{version}"], cwd=tmp, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        tarball = Path(tmp) / name
        algorithm, _, expected = integrity.partition("-")
        actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if actual != expected:
            print(f"{name}: integrity {algorithm}-{actual} is not the registry's {integrity}", file=sys.stderr)
            return 1
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        shutil.rmtree(TARGET, ignore_errors=True)
        TARGET.mkdir(parents=True)
        hashes = {}
        for source, target in FILES.items():
            shutil.copyfile(Path(tmp) / "package" / source, TARGET / target)
            hashes[target] = hashlib.sha256((TARGET / target).read_bytes()).hexdigest()
    manifest = {"package": "three", "version": version, "registry": "https://registry.npmjs.org/",
                "integrity": integrity, "license": "MIT", "files": hashes,
                "from": {target: source for source, target in FILES.items()}, "note": NOTE}  # fmt: skip
    (TARGET / "SOURCE.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"three {version} vendored into {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else VERSION))
