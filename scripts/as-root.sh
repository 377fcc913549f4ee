# Sourced by the scripts that change the host: runs the calling script as root. As root it does
# nothing; otherwise it re-executes the script through sudo, or says what to do when there is none.
# shellcheck shell=bash
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=BERTH_BUILD_DIR -- "$0" "$@"
  fi
  echo "$(basename "$0"): run as root (it installs packages, creates links, cgroups and containers); sudo is not installed" >&2
  exit 1
fi
