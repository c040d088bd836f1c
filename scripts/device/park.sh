#!/usr/bin/env bash
# Keeps the tree that travels to the GPU machine under the device tool's 64 MiB limit (working tree + carried
# paths, .device/ included, ~45 MB by itself). Tracked paths a GPU command does not need are moved into
# .parked/ (ignored through .git/info/exclude, so not sent) and moved back afterwards.
#
#   scripts/device/park.sh tests/fixtures models     # before the device call(s)
#   scripts/device/park.sh --restore                 # afterwards (always; `git status` shows parked paths as deleted)
#   scripts/device/park.sh --size                    # what would travel now, in MB
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
mkdir -p .git/info && { grep -qx '/.parked/' .git/info/exclude 2>/dev/null || echo '/.parked/' >> .git/info/exclude; }
travelling_mb() {
  { git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | grep total$ | awk '{s+=$1} END {print s}'; } |
    awk '{printf "%.1f", $1/1048576}'
}
case "${1:-}" in
  --restore)
    [ -d .parked ] || { echo "nothing parked"; exit 0; }
    (cd .parked && find . -mindepth 1 -maxdepth 3 -type d -empty -delete 2>/dev/null; true)
    cp -a .parked/. . && rm -rf .parked
    echo "restored; travelling now: $(travelling_mb) MB (+ carried paths)"
    ;;
  --size)
    echo "travelling now: $(travelling_mb) MB (+ carried paths such as .device and dist)"
    ;;
  "")
    echo "usage: $0 PATH... | --restore | --size" >&2; exit 2
    ;;
  *)
    for p in "$@"; do
      [ -e "$p" ] || { echo "no such path: $p" >&2; exit 2; }
      mkdir -p ".parked/$(dirname "$p")"
      mv "$p" ".parked/$p"
    done
    echo "parked $*; travelling now: $(travelling_mb) MB (+ carried paths)"
    ;;
esac
