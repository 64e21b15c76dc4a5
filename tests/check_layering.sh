#!/usr/bin/env bash
# fer_core never includes a header of fer_report: the dependency runs one way.
# Which sources belong to which library is read from libfer/CMakeLists.txt; a
# report header is the header of a report source (src/x.cpp -> fer/x.h). Every
# other header in libfer/include/fer is the core's, except the umbrella fer.h.
set -euo pipefail
root=${1:?usage: check_layering.sh SOURCE_DIR}
lib=$root/libfer
sources_of() {
  awk -v t="$1" '
    $0 ~ "^add_library\\(" t "$" { on = 1; next }
    on && /^\)/ { on = 0 }
    on { print $1 }
    $0 ~ "target_sources\\(" t " " { for (i = 3; i <= NF; i++) { gsub(/\)/, "", $i); print $i } }' "$lib/CMakeLists.txt"
}
core_sources=$(sources_of fer_core)
report_sources=$(sources_of fer_report)
[ -n "$core_sources" ] && [ -n "$report_sources" ] || { echo "cannot read the source lists from $lib/CMakeLists.txt"; exit 1; }

report_headers=""
for s in $report_sources; do
  h=$(basename "$s" .cpp).h
  [ -f "$lib/include/fer/$h" ] && report_headers="$report_headers $h"
done
core_files=""
for s in $core_sources; do core_files="$core_files $lib/$s"; done
for h in "$lib"/include/fer/*.h; do
  name=$(basename "$h")
  [ "$name" = fer.h ] && continue
  case " $report_headers " in *" $name "*) continue ;; esac
  core_files="$core_files $h"
done

status=0
for h in $report_headers; do
  if hits=$(grep -l "#include \"fer/$h\"" $core_files); then
    for f in $hits; do echo "core file ${f#$root/} includes the report header fer/$h"; done
    status=1
  fi
done
if grep -l "spdlog/" $core_files >/dev/null; then
  grep -l "spdlog/" $core_files | sed "s|^$root/|core file |; s|$| logs through spdlog (take a LogFn)|"
  status=1
fi
[ $status = 0 ] && echo "layering ok: $(echo $core_files | wc -w) core files include none of: $report_headers"
exit $status
