#!/usr/bin/env bash
# The folders of libfer (include/fer/<folder>/ and src/<folder>/) and their arrows:
#   1. fer_core is every folder but report/: none of its files includes a
#      fer/report/ header or spdlog (the core reports through callbacks).
#   2. No cycle between folders: "folder A includes a header of folder B" is an
#      arrow A -> B, and the arrows form a DAG (tsort finds any loop).
#   3. Headers and sources mirror each other: every folder (and sub-folder, as
#      report/'s wings) of src/ is a folder of include/fer/, and no header sits
#      loose beside the umbrella fer/fer.h.
#   4. fer/fer.h includes every public header.
#   check_layering.sh SOURCE_DIR      (FER_SHOW_ARROWS=1: also print the arrows, "from to")
set -euo pipefail
root=${1:?usage: check_layering.sh SOURCE_DIR}
lib=$root/libfer
status=0

# Files of folder F: its public headers and its sources (private headers included).
files_of() { find "$lib/include/fer/$1" "$lib/src/$1" -type f \( -name '*.h' -o -name '*.cpp' \) 2>/dev/null; }
folders=$(find "$lib/include/fer" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
[ -n "$folders" ] && echo "$folders" | grep -qx report || { echo "no folders (or no report/) under $lib/include/fer"; exit 1; }

for f in $(find "$lib/src" -mindepth 1 -type d -printf '%P\n'); do
  [ -d "$lib/include/fer/$f" ] || { echo "libfer/src/$f has no include/fer/$f"; status=1; }
done
for h in "$lib"/include/fer/*.h "$lib"/src/*.cpp "$lib"/src/*.h; do
  [ -e "$h" ] || continue
  [ "$h" = "$lib/include/fer/fer.h" ] && continue
  echo "${h#$root/} sits outside every folder"; status=1
done

for h in $(find "$lib/include/fer" -mindepth 2 -name '*.h' | sort); do  # folders' headers, sub-folders included
  name=${h#"$lib"/include/}
  grep -q "#include \"$name\"" "$lib/include/fer/fer.h" || { echo "fer/fer.h does not include $name"; status=1; }
done

edges=$(mktemp); trap 'rm -f "$edges"' EXIT
core_count=0
for f in $folders; do
  for file in $(files_of "$f"); do
    if [ "$f" != report ]; then
      core_count=$((core_count + 1))
      if grep -q '#include [<"]fer/report/' "$file"; then
        echo "core file ${file#$root/} includes a report header: $(grep -o 'fer/report/[a-z_/]*\.h' "$file" | sort -u | tr '\n' ' ')"
        status=1
      fi
      if grep -q '#include [<"]spdlog/' "$file"; then
        echo "core file ${file#$root/} logs through spdlog (take a LogFn)"; status=1
      fi
    fi
    for to in $(grep -o '#include [<"]fer/[a-z_]*/' "$file" | sed 's|.*fer/||; s|/$||' | sort -u); do
      [ "$to" != "$f" ] && echo "$f $to" >>"$edges"
    done
  done
done
sort -u -o "$edges" "$edges"
if ! tsort "$edges" >/dev/null 2>"$edges.err"; then
  echo "the folders include each other in a loop:"; cat "$edges.err"
  echo "(arrows: $(tr '\n' ';' <"$edges"))"; status=1
fi
[ -z "${FER_SHOW_ARROWS:-}" ] || cat "$edges"
rm -f "$edges.err"
[ $status = 0 ] && echo "layering ok: $core_count core files include no report header or spdlog; $(wc -l <"$edges") arrows between $(echo $folders | wc -w) folders, no loop"
exit $status
