# Shared helpers for the infra scripts.
wait_for_port() { # host port seconds name
  local host=$1 port=$2 secs=$3 name=$4 i
  for ((i = 0; i < secs * 5; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
      echo "$name is up on $host:$port"
      return 0
    fi
    sleep 0.2
  done
  echo "$name did not come up on $host:$port within ${secs}s" >&2
  return 1
}
