#!/bin/sh
# sqlite3 on the malloc shim: 6000 inserts (one transaction of single-row
# INSERTs, rows of 10 bytes to 3 KiB), an index, aggregate and join queries,
# an update and a delete of a third, VACUUM, an integrity check; the output
# must equal sqlite.expected (what sqlite3 prints on any allocator).
# $1: the directory of sqlite.expected.
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
{
  echo "PRAGMA page_size=4096; PRAGMA cache_size=-8000;"
  echo "CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, body BLOB);"
  echo "CREATE TABLE grp(id INTEGER PRIMARY KEY, label TEXT);"
  echo "BEGIN;"
  seq 0 5999 | awk '{ printf "INSERT INTO item VALUES(%d, %d, '\''name-%d'\'', zeroblob(%d));\n", $1, $1 % 37, $1 * 7919 % 6000, 10 + ($1 * 131) % 3000 }'
  seq 0 36 | awk '{ printf "INSERT INTO grp VALUES(%d, '\''group %d'\'');\n", $1, $1 }'
  echo "COMMIT;"
  echo "CREATE INDEX item_grp ON item(grp, name);"
  echo "SELECT count(*), sum(length(body)), min(name), max(name) FROM item;"
  echo "SELECT g.label, count(*), sum(length(i.body)) FROM item i JOIN grp g ON g.id = i.grp GROUP BY g.id ORDER BY g.id LIMIT 5;"
  echo "SELECT name FROM item WHERE grp = 13 ORDER BY name LIMIT 3;"
  echo "UPDATE item SET body = zeroblob(length(body) / 2), name = upper(name) WHERE id % 5 = 0;"
  echo "DELETE FROM item WHERE id % 3 = 1;"
  echo "SELECT count(*), sum(length(body)), count(DISTINCT grp) FROM item;"
  echo "VACUUM;"
  echo "PRAGMA integrity_check;"
  echo "SELECT count(*), total(length(body)) FROM item WHERE name LIKE 'NAME-%';"
  echo "SELECT group_concat(id) FROM (SELECT id FROM item ORDER BY length(body) DESC, id LIMIT 8);"
} > "$dir/script.sql"
sqlite3 "$dir/db.sqlite" < "$dir/script.sql" > "$dir/out.txt"
if diff -u "$1/sqlite.expected" "$dir/out.txt"; then
  echo "sqlite3 results as expected ($(wc -l < "$dir/out.txt") lines)"
else
  exit 1
fi
