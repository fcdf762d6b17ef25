#!/bin/sh
# Checks the built storefront: a title, and every local link points at a file that exists.
set -eu
grep -q "<title>" public/index.html || { echo "public/index.html has no <title>"; exit 1; }
for href in $(grep -o 'href="[^":]*"' public/index.html | cut -d'"' -f2); do
  [ -f "public/$href" ] || { echo "broken link: $href"; exit 1; }
done
echo "check: storefront ok"
