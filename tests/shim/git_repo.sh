#!/bin/sh
# git on the malloc shim: a repository made, 25 commits (files added, changed,
# renamed, deleted; a branch merged), packed by gc, then checked: git fsck
# finds nothing, git log counts every commit, and the tree's content hash is
# the one the same steps give on any allocator (no dates or names in it).
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
export GIT_AUTHOR_NAME=kmm GIT_AUTHOR_EMAIL=kmm@example.org GIT_COMMITTER_NAME=kmm GIT_COMMITTER_EMAIL=kmm@example.org
export GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' GIT_COMMITTER_DATE='2026-01-01T00:00:00Z'
export GIT_CONFIG_NOSYSTEM=1 HOME="$dir"
git init -q -b main repo
cd repo
i=0
while [ $i -lt 20 ]; do
  # one awk for both files: a process less per commit on a loaded machine
  mkdir -p "dir$((i % 5))"
  awk -v i=$i -v f="file$((i % 17)).txt" -v b="dir$((i % 5))/blob$i" 'BEGIN {
    for (k = i; k <= i * 40; k++) print k > f
    c = sprintf("%c", 97 + i % 26); s = ""
    for (k = 0; k < i * 997; k++) s = s c
    printf "%s", s > b }'
  if [ $((i % 7)) -eq 6 ]; then git rm -q "dir$(((i - 6) % 5))/blob$((i - 6))"; fi
  git add -A
  if [ $((i % 11)) -eq 10 ]; then git mv "file$((i % 17)).txt" "moved$i.txt"; fi
  git commit -q -m "commit $i"
  i=$((i + 1))
done
git checkout -q -b side
i=0
while [ $i -lt 4 ]; do
  echo "side $i" >> side.txt
  git add side.txt
  git commit -q -m "side $i"
  i=$((i + 1))
done
git checkout -q main
git merge -q --no-ff -m "merge side" side
git gc -q
git fsck --full --strict
echo "commits $(git log --oneline | wc -l)"
echo "tree $(git rev-parse 'HEAD^{tree}')"
echo "files $(git ls-files | wc -l)"
