#!/bin/sh
# Builds the Python product 1.1 (tests/components/py-product) with componentize-py
# into target/wasm32-wasip2/guest/py_product.wasm. Installs componentize-py into
# target/py-venv first if it is missing. Does nothing when the build is newer
# than everything it is made from.
#
#   tests/components/py-product/build.sh            # WASI imported (linked inert by the host)
#   STUB_WASI=1 tests/components/py-product/build.sh   # no WASI imports: py_product_stub.wasm
#
# No cargo is involved.
set -eu

COMPONENTIZE_PY_VERSION=0.25.1

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv="$root/target/py-venv"
guest="$root/target/wasm32-wasip2/guest"
wit="$root/wit"

if [ "${STUB_WASI:-0}" = 1 ]; then
    out="$guest/py_product_stub.wasm"
    stub="--stub-wasi"
else
    out="$guest/py_product.wasm"
    stub=""
fi

cpy="$venv/bin/componentize-py"
if ! [ -x "$cpy" ] || [ "$("$cpy" --version 2>/dev/null)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

# Up to date: the output is newer than the app, its world, the contracts it
# builds against, this script and componentize-py itself.
if [ -f "$out" ] && [ -z "$(find "$here/app.py" "$here/world.wit" "$here/build.sh" \
        "$wit/moat-platform" "$wit/shop-product-1.1" "$wit/shop-order" "$cpy" \
        -newer "$out" -print 2>/dev/null | head -n 1)" ]; then
    exit 0
fi

mkdir -p "$guest"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# The contracts come straight from wit/ (one -d per package, dependencies first),
# the world from world.wit beside app.py: nothing is copied or linked.
# -p names only this directory: VIRTUAL_ENV is unset so that componentize-py
# does not add the venv's site-packages to what it bundles.
cd "$here"
env -u VIRTUAL_ENV "$cpy" \
    -d "$wit/moat-platform" -d "$wit/shop-product-1.1" -d "$wit/shop-order" -d "$here/world.wit" \
    -w component:py-product/product \
    componentize $stub -p "$here" -o "$tmp" app
mv "$tmp" "$out"
trap - EXIT
echo "built $out ($(wc -c <"$out") bytes)"
