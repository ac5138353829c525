# test/common.sh - shared helpers for test/run and test/demo (sourced, not run).
#
# Provides:
#   REPO_ROOT        absolute path of the repository (the directory above test/)
#   PG_BINDIR        /usr/lib/postgresql/15/bin
#   PG_CONFIG        pg_config of PostgreSQL 15
#   cu_ensure_deps   install missing Debian packages (root) or fail clearly
#   cu_build         make WERROR=1 && make install
#   cu_virtualenv    pg_virtualenv for PostgreSQL 15 in a private temp dir

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
export PG_CONFIG="$PG_BINDIR/pg_config"
export PATH="$PG_BINDIR:$PATH"

# Packages the build and every test tier need.
#   postgresql-15 / -contrib      server (+ pg_virtualenv via postgresql-common)
#   postgresql-server-dev-15      PGXS, pg_regress, pg_isolation_regress, PostgreSQL::Test perl modules
#   postgresql-15-pgtap           pgTAP extension
#   libtap-parser-sourcehandler-pgtap-perl   pg_prove (a Recommends of pgtap; named explicitly)
#   libipc-run-perl               TAP crash/restart tests
#   libidn2-dev                   normalize_email: IDNA domains (src/normalize.c)
#   libphonenumber-dev, g++       normalize_phone: libphonenumber, C++ (src/phone.cpp)
#   python3-sqlalchemy / -psycopg2   app tier: the applications' SQLAlchemy 1.4 models (test/app)
#   python3-django / -django-simple-history   app tier: the Django 3.2 application of the rekey
CU_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib
             postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
             libipc-run-perl make gcc g++ libidn2-dev libphonenumber-dev
             python3-sqlalchemy python3-psycopg2 python3-django python3-django-simple-history)

cu_log() { printf '==> %s\n' "$*"; }

cu_missing_packages() {
    local p status
    for p in "${CU_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case $status in
            *"install ok installed"*) ;;
            *) printf '%s\n' "$p" ;;
        esac
    done
}

# Install whatever is missing. Returns non-zero with a message when it cannot.
cu_ensure_deps() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "error: dpkg-query not found; this script expects Debian/Ubuntu." >&2
        echo "       Needed: ${CU_PACKAGES[*]}" >&2
        return 1
    fi
    local missing
    missing=$(cu_missing_packages)
    if [ -z "$missing" ]; then
        cu_log "dependencies: all present"
        return 0
    fi
    # shellcheck disable=SC2086
    set -- $missing
    if [ "$(id -u)" != 0 ]; then
        echo "error: missing packages: $*" >&2
        echo "       run as root, or install them first:" >&2
        echo "       sudo apt-get update && sudo apt-get install -y $*" >&2
        return 1
    fi
    cu_log "installing missing packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null || return 1
    apt-get install -y --no-install-suggests "$@" </dev/null || return 1
}

# Build with warnings as errors and install into the PostgreSQL 15 tree.
cu_build() {
    cu_log "build: make WERROR=1"
    make -C "$REPO_ROOT" PG_CONFIG="$PG_CONFIG" WERROR=1 </dev/null || return 1
    cu_log "build: make install"
    local pkglibdir sharedir
    pkglibdir=$("$PG_CONFIG" --pkglibdir)
    sharedir=$("$PG_CONFIG" --sharedir)
    if [ -w "$pkglibdir" ] && [ -w "$sharedir/extension" ]; then
        make -C "$REPO_ROOT" PG_CONFIG="$PG_CONFIG" install </dev/null || return 1
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n make -C "$REPO_ROOT" PG_CONFIG="$PG_CONFIG" install </dev/null || return 1
    else
        echo "error: cannot write $pkglibdir or $sharedir/extension;" >&2
        echo "       run as root (or with passwordless sudo) so 'make install' can install the extension." >&2
        return 1
    fi
}

# Run a command against a throw-away PostgreSQL 15 cluster.
# -t keeps the cluster in a private temp dir even as root, so several runs
# (or other people's pg_virtualenv) can go on at the same time.
cu_virtualenv() {
    pg_virtualenv -t -v "$PG_MAJOR" "$@"
}
