#!/usr/bin/env bash
# Usage: fetch-deb.sh SUITE PACKAGE DEST
#
# Downloads PACKAGE from Debian suite SUITE and unpacks it into DEST (not installed: packages
# from newer suites may want a newer glibc than this machine has; containerd's are static Go).
# The mirror is the one already configured on this machine; it is read at run time, never
# written down. Writes DEST/.version with the version actually served: suites move.
set -euo pipefail
suite=$1 package=$2 dest=$3

if [ -f "$dest/.version" ]; then
  echo "$package from $suite: cached $(cat "$dest/.version") in $dest"
  exit 0
fi

mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "fetch-deb: no Debian mirror is configured in /etc/apt; cannot fetch $package from $suite" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial"
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$mirror" "$suite" > "$work/parts/$suite.sources"
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "Dir::State::status=/dev/null"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" -qq update
(cd "$work" && apt-get "${apt_opts[@]}" -qq download "$package")
deb=$(ls "$work"/"${package}"_*.deb)
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
dpkg-deb -x "$deb" "$dest.partial"
dpkg-deb -f "$deb" Version > "$dest.partial/.version"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$package from $suite: $(cat "$dest/.version") unpacked into $dest"
