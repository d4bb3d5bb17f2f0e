#!/usr/bin/env bash
# bench/sidebyside.sh TITLE A.tsv B.tsv: print the label<TAB>value figures
# two bench runs wrote with -summary (SQLite, PostgreSQL) side by side, in
# A's order; a figure only one run has shows "-" for the other.
set -euo pipefail
title=$1 a=$2 b=$3
echo "$title: SQLite | PostgreSQL"
awk -F'\t' 'NR == FNR { if (!($1 in pg)) pg[$1] = $2; next }
  { if (seen[$1]++) next; v = ($1 in pg) ? pg[$1] : "-"; printf "  %-58s %18s | %s\n", $1, $2, v }' "$b" "$a"
