#!/usr/bin/env bash
# Compile time of one translation unit that includes qlib's umbrella, against fmt's
# format.h and Eigen/Core (g++ -O2, the median of 3 runs each). Prints a table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
measure() {
  local header="$1" times=()
  printf '#include <%s>\nint main() { return 0; }\n' "$header" > "$tmp/tu.cpp"
  for _ in 1 2 3; do
    local s e
    s=$(date +%s%N)
    g++ -std=c++17 -O2 -I"$root/include" -I/usr/include/eigen3 -c "$tmp/tu.cpp" -o "$tmp/tu.o"
    e=$(date +%s%N)
    times+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}
printf '%-20s %10s\n' "header" "ms (g++ -O2)"
for h in qlib/quant.hpp fmt/format.h Eigen/Core; do
  if echo "#include <$h>" | g++ -std=c++17 -I"$root/include" -I/usr/include/eigen3 -x c++ -fsyntax-only - 2>/dev/null; then
    printf '%-20s %10s\n' "$h" "$(measure "$h")"
  else
    printf '%-20s %10s\n' "$h" "(not installed)"
  fi
done
