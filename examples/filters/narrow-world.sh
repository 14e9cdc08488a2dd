#!/usr/bin/env bash
# Write a copy of a WIT folder with one more world: the `filter` world of the package, renamed,
# importing only the host services a filter is granted. Language toolchains (componentize-py,
# componentize-js) import every interface of the world they build for, and the gateway refuses a
# component importing a service it was not granted — so a filter targets exactly its grants.
#
# usage: narrow-world.sh WIT_DIR OUT_DIR WORLD_NAME [SERVICE...]
set -euo pipefail
wit=$1 out=$2 world=$3
shift 3
rm -rf "$out"
mkdir -p "$out"
cp -R "$wit"/. "$out"/
src="$wit/filter.wit"
package=$(awk '/^package [^ ]+;/ { print; exit }' "$src")
[ -n "$package" ] || { echo "no package declaration in $src" >&2; exit 1; }
{
  echo "$package"
  echo
  awk -v world="$world" -v keep=" $* " '
    /^world filter \{/ { inside = 1; print "world " world " {"; next }
    inside && /^\}/ { print; inside = 0; next }
    inside && /^[ \t]*\/\/\// { next }
    inside && /^[ \t]*import [a-z][a-z0-9-]*;/ {
      name = $0; sub(/^[ \t]*import /, "", name); sub(/;.*/, "", name)
      if (index(keep, " " name " ") == 0) next
    }
    inside { print }
  ' "$src"
} > "$out/zz-$world.wit"
grep -q "^world $world {" "$out/zz-$world.wit" || { echo "no \`world filter\` in $src" >&2; exit 1; }
