#!/usr/bin/env bash
# Build the Debian package: release binary, completions and man pages generated from the
# binary's own CLI definition, then `cargo deb --no-build`. With --check, also list its
# contents (dpkg-deb -c), check the paths that must be there, and unpack it into a
# throwaway root with dpkg where that works. Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/../.."

check=false
[ "${1:-}" = "--check" ] && check=true

target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked
bin="$target/release/keywarden"
assets="$target/release/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/man"
"$bin" completions bash > "$assets/keywarden.bash"
"$bin" completions zsh > "$assets/_keywarden"
"$bin" completions fish > "$assets/keywarden.fish"
"$bin" man --out "$assets/man" > /dev/null
gzip -9n "$assets"/man/*.1

deb=$(cargo deb --no-build --locked 2>/dev/null | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb did not produce a package" >&2; exit 1; }

if $check; then
    listing=$(dpkg-deb -c "$deb")
    for path in ./usr/bin/keywarden \
        ./usr/lib/systemd/system/keywarden.service \
        ./usr/lib/systemd/system/keywarden@.service \
        ./usr/lib/sysusers.d/keywarden.conf \
        ./usr/lib/tmpfiles.d/keywarden.conf \
        ./etc/keywarden/agent.toml.example \
        ./usr/share/doc/keywarden/README.md \
        ./usr/share/doc/keywarden/docs/deploy.md \
        ./usr/share/bash-completion/completions/keywarden \
        ./usr/share/zsh/vendor-completions/_keywarden \
        ./usr/share/fish/vendor_completions.d/keywarden.fish \
        ./usr/share/man/man1/keywarden.1.gz \
        ./usr/share/man/man1/keywarden-report.1.gz \
        ./usr/share/keywarden/grafana/keywarden.json \
        ./usr/share/keywarden/prometheus/keywarden-rules.yml; do
        grep -q " $path\$" <<<"$listing" || { echo "package lacks $path" >&2; echo "$listing" >&2; exit 1; }
    done
    control=$(dpkg-deb -f "$deb")
    grep -q '^Depends:.*ca-certificates' <<<"$control" || { echo "Depends lacks ca-certificates" >&2; exit 1; }
    scripts=$(mktemp -d)
    dpkg-deb -e "$deb" "$scripts"
    grep -q 'enable --now' "$scripts/postinst" \
        && ! grep -vE '^\s*(#|sudo )' "$scripts/postinst" | grep -qE 'systemctl (start|enable)' \
        || { echo "postinst must not start or enable the service" >&2; exit 1; }
    rm -rf "$scripts"

    # Unpack into a throwaway root with its own dpkg database (no maintainer scripts run:
    # they would act on this host). Then the unpacked binary must run.
    root=$(mktemp -d)
    mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
    touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
    if dpkg --root="$root" --force-not-root --force-depends --unpack "$deb" >/dev/null 2>&1; then
        "$root/usr/bin/keywarden" --version
        "$root/usr/bin/keywarden" completions bash > "$root/completion.bash"
        grep -q '_keywarden()' "$root/completion.bash"
        zcat "$root/usr/share/man/man1/keywarden.1.gz" > "$root/keywarden.1"
        grep -q '^.TH keywarden 1' "$root/keywarden.1"
        dpkg --root="$root" -l keywarden > "$root/status.txt"
        grep -q '^iU  keywarden' "$root/status.txt"
        echo "installed (unpacked) into a throwaway root: ok"
    else
        echo "dpkg --root could not unpack here; contents checked with dpkg-deb -c only"
    fi
    rm -rf "$root"
fi
echo "$deb"
