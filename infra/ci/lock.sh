#!/usr/bin/env bash
# Regenerate the hashed lock files from pyproject.toml:
#   requirements.lock        [project].dependencies and everything they pull in (the image's runtime)
#   requirements-build.lock  [build-system].requires (what builds the project's wheel in the image)
# Both are universal (markers instead of one platform) from Python 3.11 up and carry the sha256 of
# every file of each pinned release, so one lock serves Linux x86_64 and aarch64, Python 3.11 and
# 3.12 alike. Existing pins are kept unless asked otherwise: pass `--upgrade` or
# `--upgrade-package NAME` through to uv. Needs uv (`pip install uv`) and the package index.
set -euo pipefail
cd "$(dirname "$0")/../.."

uv=$(command -v uv || true)
if [[ -z $uv && -x .venv/bin/uv ]]; then uv=.venv/bin/uv; fi
if [[ -z $uv ]]; then
  echo "lock.sh: uv not found; install it with: pip install uv" >&2
  exit 2
fi

# --no-config: a developer's own uv.toml (another index, other defaults) must not shape the lock.
common=(--universal --python-version 3.11 --generate-hashes --no-config --quiet
        --custom-compile-command "infra/ci/lock.sh")

"$uv" pip compile pyproject.toml "${common[@]}" --output-file requirements.lock "$@"

python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  | "$uv" pip compile - "${common[@]}" --output-file requirements-build.lock "$@"
