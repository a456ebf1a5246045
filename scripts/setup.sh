#!/usr/bin/env bash
# Set up everything OpenPACS needs on this machine, idempotently:
#   scripts/setup.sh serve   Python virtual environment with OpenPACS, and the OHIF viewer
#                            (npm package @ohif/app, prebuilt) unpacked into a cache
#   scripts/setup.sh test    the same plus the real parts the tests use: DCMTK, dicom3tools, Orthanc, Chromium, a
#                            running PostgreSQL on 127.0.0.1:5432 (started from Debian's
#                            packages when none runs). Debian packages are installed when run
#                            as root.
set -euo pipefail
mode=${1:-serve}
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv
python=${PYTHON:-python3}

say() { printf 'setup: %s\n' "$*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: $* (run as root, or install them: apt-get install $*)"
    return 1
  fi
  say "installing Debian packages: $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
  fi
}

# -- Python -----------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment in .venv"
  "$python" -m venv "$venv"
fi
extras=""
[ "$mode" = test ] && extras="[dev]"
stamp="$venv/.openpacs-setup"
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
current=$(cat "$stamp" 2>/dev/null || true)
if [ "$current" != "$hash[dev]" ] && [ "$current" != "$hash$extras" ]; then
  say "installing Python packages${extras:+ (with test tools)}"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$venv/bin/pip" install -q --disable-pip-version-check -e ".$extras"
  echo "$hash$extras" > "$stamp"
fi

# -- the OHIF viewer (served at /viewer; never committed) -------------------------------
viewer_dir=$("$venv/bin/python" -c 'from openpacs.settings import default_viewer_dir; print(default_viewer_dir())')
ohif_version=$("$venv/bin/python" -c 'from openpacs.settings import OHIF_VERSION; print(OHIF_VERSION)')
if [ ! -f "$viewer_dir/index.html" ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  say "installing the OHIF viewer $ohif_version into $viewer_dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@ohif/app@$ohif_version" >/dev/null && tar -xzf ohif-app-*.tgz)
  [ -f "$work/package/dist/index.html" ] || { say "the @ohif/app package has no dist/index.html"; exit 1; }
  mkdir -p "$(dirname "$viewer_dir")"
  rm -rf "$viewer_dir.partial"
  mv "$work/package/dist" "$viewer_dir.partial"
  mv "$viewer_dir.partial" "$viewer_dir"
fi

[ "$mode" = test ] || exit 0

# -- Chromium (the browser tests drive it headless) --------------------------------------
if ! command -v chromium >/dev/null; then
  apt_install chromium
fi

# -- DCMTK (the reference DICOM tools the integration tests drive) ---------------------
if ! command -v storescu >/dev/null || ! command -v findscu >/dev/null; then
  apt_install dcmtk
fi

# -- Orthanc (a peer PACS in the routing and migration tests; Debian's package, not started as a service)
if ! command -v Orthanc >/dev/null; then
  apt_install orthanc
fi

# -- dicom3tools (dciodvfy checks the objects corrections send out) ----------------------
if ! command -v dciodvfy >/dev/null; then
  apt_install dicom3tools
fi

# -- dcmjs-dimse (npm): an independent MPPS and storage commitment client for the tests --------
dcmjs_dir=$("$venv/bin/python" -c 'import sys; sys.path.insert(0, "tests"); from dcmjs import dcmjs_dir; print(dcmjs_dir())')
dcmjs_version=$(basename "$dcmjs_dir" | sed 's/^dcmjs-dimse-//')
if [ ! -f "$dcmjs_dir/node_modules/dcmjs-dimse/package.json" ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  say "installing dcmjs-dimse $dcmjs_version into $dcmjs_dir"
  rm -rf "$dcmjs_dir.partial"
  mkdir -p "$dcmjs_dir.partial"
  npm install --silent --no-audit --no-fund --prefix "$dcmjs_dir.partial" "dcmjs-dimse@$dcmjs_version" >/dev/null
  [ -f "$dcmjs_dir.partial/node_modules/dcmjs-dimse/package.json" ] || { say "npm did not install dcmjs-dimse"; exit 1; }
  rm -rf "$dcmjs_dir"
  mv "$dcmjs_dir.partial" "$dcmjs_dir"
fi

# -- PostgreSQL on 127.0.0.1:5432 --------------------------------------------------------
pg_up() { "$venv/bin/python" - <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}
if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
  fi
  if [ "$(id -u)" = 0 ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    conf=/etc/postgresql/$version/main
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
    fi
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || { say "PostgreSQL is not running on 127.0.0.1:5432"; exit 1; }
fi
