#!/bin/sh
# Runs a command and checks how it went: exit status 0, and its output
# (stdout and stderr together) matching every -e pattern and none of the -x
# patterns (grep -E). -p LIB preloads LIB into the command only (not into
# this script or grep); -o OPTIONS sets KMM_OPTIONS for it.
#   expect.sh [-p LIB] [-o OPTIONS] [-e ERE]... [-x ERE]... -- command [args]
set -u
preload= options= want= refuse=
nl='
'
while [ $# -gt 0 ]; do
  case $1 in
    -p) preload=$2; shift 2 ;;
    -o) options=$2; shift 2 ;;
    -e) want="$want$2$nl"; shift 2 ;;
    -x) refuse="$refuse$2$nl"; shift 2 ;;
    --) shift; break ;;
    *) echo "expect.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if [ -n "$preload" ]; then
  env LD_PRELOAD="$preload" KMM_OPTIONS="$options" "$@" > "$out" 2>&1
else
  env KMM_OPTIONS="$options" "$@" > "$out" 2>&1
fi
status=$?
cat "$out"
fail=0
if [ $status -ne 0 ]; then
  echo "expect.sh: exit status $status (want 0)"; fail=1
fi
printf '%s' "$want" | while IFS= read -r re; do
  [ -z "$re" ] || grep -Eq -- "$re" "$out" || { echo "expect.sh: output lacks /$re/"; exit 1; }
done || fail=1
printf '%s' "$refuse" | while IFS= read -r re; do
  [ -z "$re" ] || ! grep -Eq -- "$re" "$out" || { echo "expect.sh: output has /$re/"; exit 1; }
done || fail=1
exit $fail
