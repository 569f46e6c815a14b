# Sourced by deploy/postgres.sh and deploy/redis.sh: `generated_password FILE` prints the password kept in FILE,
# making it first when it is missing: 24 random bytes as hex, mode 0600, made once atomically (a hard link
# never replaces a file another process made first).
generated_password() {
  local file=$1
  if [ ! -s "$file" ]; then
    mkdir -p "$(dirname "$file")"
    local tmp="$file.$$"
    (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$tmp")
    ln "$tmp" "$file" 2>/dev/null || true
    rm -f "$tmp"
  fi
  chmod 600 "$file"
  cat "$file"
}
