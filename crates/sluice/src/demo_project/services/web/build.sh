#!/bin/sh
# Builds the demo shop's static storefront into public/.
set -eu
mkdir -p public
sed "s/@COMMIT@/${SLUICE_COMMIT:-dev}/" index.html.in > public/index.html
cp style.css public/style.css
echo "built public/ for commit ${SLUICE_COMMIT:-dev}"
