#!/bin/sh
# Make every secret the deployment files use, as files in one directory (default: ./secrets at the repository
# root, where docker-compose.yml looks for them). Kubernetes Secrets are made from the same files: see
# deploy/README.md, "Secrets".
#
#     deploy/make-secrets.sh [DIR]
#
# Environment: WEB_USER (the console's first user, an operator; default admin), FLOWER_USER (default admin),
# REDIS_HOST (the host in the Redis URL; default shardsync-redis: the Kubernetes Service, and an alias of the
# compose redis service), MAKE_SECRETS_CLI (the command that runs `shardsync`; default: shardsync if installed,
# else the image: docker run --rm --network none shardsync:0.1.0 shardsync).
#
# It never overwrites a file: remove the directory (or the file) to make new secrets. Nothing secret is put on a
# command line (printf and read are shell builtins). The console user's token is printed once, on stderr: give
# it to that user; only its SHA-256 is kept.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-"$here/../secrets"}
web_user=${WEB_USER:-admin}
flower_user=${FLOWER_USER:-admin}
redis_host=${REDIS_HOST:-shardsync-redis}

say() { printf '%s\n' "$*" >&2; }

# Random bytes as hex (URL-safe, no ':' or ',' that Flower's user:password list would split on).
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

sha256_hex() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 | cut -d' ' -f1
    else openssl dgst -sha256 -r | cut -d' ' -f1
    fi
}

if [ -z "${MAKE_SECRETS_CLI:-}" ]; then
    if command -v shardsync >/dev/null 2>&1; then MAKE_SECRETS_CLI=shardsync
    else MAKE_SECRETS_CLI="docker run --rm --network none shardsync:0.1.0 shardsync"
    fi
fi

files="redis_password redis_acl shardsync_broker_url web_users web_session_key flower_basic_auth"
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
for name in $files; do
    if [ -e "$dir/$name" ]; then
        say "make-secrets: $dir/$name exists; nothing was changed (remove $dir to make new secrets)"
        exit 1
    fi
done
# Keep the directory out of git whatever the repository's own .gitignore says.
printf '*\n' > "$dir/.gitignore"
# Everything is made in a scratch directory first: a failure leaves no half set behind.
new="$dir/.new.$$"
mkdir "$new"
trap 'rm -rf "$new"' EXIT

# The console: its first user (the token goes to the terminal, the file keeps its digest) and the key that
# signs session cookies (the same on every replica).
say "make-secrets: the console user $web_user (operator); its token is printed once, below:"
# shellcheck disable=SC2086  # MAKE_SECRETS_CLI may be a command with arguments
if ! $MAKE_SECRETS_CLI web token "$web_user" --role operator > "$new/web_users"; then
    say "make-secrets: '$MAKE_SECRETS_CLI web token' failed; nothing was written. Install shardsync, or build the"
    say "image first (docker build -f deploy/Dockerfile -t shardsync:0.1.0 .), or set MAKE_SECRETS_CLI."
    exit 1
fi
printf '%s\n' "$(rand_hex 32)" > "$new/web_session_key"

# Redis: one random password, written where Redis reads it (its ACL file, as a SHA-256), where its health check
# reads it, and where the processes read it (the broker URL; the result backend and the store default to it).
password=$(rand_hex 32)
printf '%s\n' "$password" > "$new/redis_password"
digest=$(printf '%s' "$password" | sha256_hex)
printf 'user default on #%s ~* &* +@all\n' "$digest" > "$new/redis_acl"
printf 'redis://:%s@%s:6379/0\n' "$password" "$redis_host" > "$new/shardsync_broker_url"

# Flower: user:password, read by Flower from FLOWER_BASIC_AUTH. No newline at the end: Kubernetes puts the key's
# bytes into the variable as they are.
printf '%s:%s' "$flower_user" "$(rand_hex 24)" > "$new/flower_basic_auth"

# World-readable files in a private directory: the containers' users (redis, uid 10001) read them through
# their bind mounts; other users of this host cannot reach them.
for name in $files; do
    chmod 644 "$new/$name"
    mv "$new/$name" "$dir/$name"
done
say "make-secrets: wrote $files in $(cd "$dir" && pwd)"
say "make-secrets: Flower's user:password is in $dir/flower_basic_auth"
