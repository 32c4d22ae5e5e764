#!/usr/bin/env bash
# Data-parallel training of train.py over several processes (README "Distributed training").
#
#   bash scripts/run_distribute_train.sh [launcher options] CONFIG DATA_PATH OUTPUT_DIR [--key value ...]
#
# CONFIG: a recipe (configs/*.yaml); DATA_PATH: the data folder, or "none" for the synthetic data set;
# OUTPUT_DIR: the run folder shared by all ranks (rank 0 writes checkpoints, metrics.json and train.log; every
# rank r > 0 writes train_rank<r>.log). Further --key value pairs go to train.py (e.g. --epochs 90).
#
# msrun mode (default; CPU, GPU and Ascend):
#   --worker_num N         total processes over all nodes (default 8)
#   --local_worker_num N   processes on this node (default: --worker_num)
#   --master_addr ADDR     address of node 0, where msrun's scheduler runs (default 127.0.0.1)
#   --master_port PORT     its port, free on node 0 (default 8118)
#   --node_rank R          this node's rank, 0..nodes-1 (default 0); run the same command on every node
#   --log_dir DIR          msrun's per-worker logs (default OUTPUT_DIR/msrun_log)
#   --cluster_time_out S   seconds to wait for every worker to join the job before giving up (default 600)
# rank-table mode (Ascend, HCCL; one process per device of this node, as the MindSpore model zoo):
#   --rank_table_file FILE the HCCL rank table (JSON); this node's devices are those of --server_id
#   --server_id ID         this node's server_id in the table (default: the first server)
#   --dry_run              print each rank's environment and command instead of starting them
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
}
die() { echo "error: $*" >&2; echo "(bash scripts/run_distribute_train.sh --help for the usage)" >&2; exit 2; }
positive_int() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, not '$2'"; }

WORKER_NUM=8; LOCAL_WORKER_NUM=""; MASTER_ADDR=127.0.0.1; MASTER_PORT=8118; NODE_RANK=0; LOG_DIR=""
TIME_OUT=600; RANK_TABLE=""; SERVER_ID=""; DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage;;
    --worker_num|--local_worker_num|--master_addr|--master_port|--node_rank|--log_dir|--cluster_time_out|--rank_table_file|--server_id)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --worker_num) WORKER_NUM="$2";; --local_worker_num) LOCAL_WORKER_NUM="$2";;
        --master_addr) MASTER_ADDR="$2";; --master_port) MASTER_PORT="$2";; --node_rank) NODE_RANK="$2";;
        --log_dir) LOG_DIR="$2";; --cluster_time_out) TIME_OUT="$2";;
        --rank_table_file) RANK_TABLE="$2";; --server_id) SERVER_ID="$2";;
      esac
      shift 2;;
    --dry_run) DRY_RUN=1; shift;;
    --*) die "unknown launcher option $1 (train.py's --key value options go after CONFIG DATA_PATH OUTPUT_DIR)";;
    *) break;;
  esac
done
[ $# -ge 3 ] || { echo "error: CONFIG, DATA_PATH and OUTPUT_DIR are required" >&2; usage; }
CONFIG="$1"; DATA_PATH="$2"; OUTPUT_DIR="$3"; shift 3
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then die "unexpected argument '$1' (train.py options are --key value pairs)"; fi
[ -f "$CONFIG" ] || die "config $CONFIG does not exist"
CONFIG="$(realpath "$CONFIG")"
DATA_ARGS=()
if [ "$DATA_PATH" != "none" ]; then
  [ -d "$DATA_PATH" ] || die "data path $DATA_PATH is not a directory (use 'none' for the synthetic data set)"
  DATA_ARGS=(--data_path "$(realpath "$DATA_PATH")")
fi
OUTPUT_DIR="$(realpath -m "$OUTPUT_DIR")"
TRAIN=("$ROOT/train.py" --config "$CONFIG" "${DATA_ARGS[@]}" --output_dir "$OUTPUT_DIR" --distribute true "$@")
# train.py's own options, the recipe and the data are checked once here, before any worker starts
CHECK_DEVICE=(); [ -z "$RANK_TABLE" ] || CHECK_DEVICE=(--device_target Ascend)
if ! CHECKED=$(python "${TRAIN[@]}" "${CHECK_DEVICE[@]}" --check_only true 2>&1 >/dev/null); then
  echo "$CHECKED" | grep '^error:' >&2 || echo "$CHECKED" | tail -n 3 >&2
  echo "(no worker was started; launcher options such as --worker_num go before CONFIG DATA_PATH OUTPUT_DIR)" >&2
  exit 2
fi

if [ -n "$RANK_TABLE" ]; then
  # ---- rank-table mode: one process per device listed for this server -----------------------------------
  [ -f "$RANK_TABLE" ] || die "rank table $RANK_TABLE does not exist"
  RANK_TABLE="$(realpath "$RANK_TABLE")"
  DEVICES=$(python - "$RANK_TABLE" "$SERVER_ID" <<'PY'
import json, sys
path, server_id = sys.argv[1], sys.argv[2]
try:
    table = json.load(open(path))
    servers = table["server_list"]
    total = sum(len(s["device"]) for s in servers)
    server = next(s for s in servers if s["server_id"] == server_id) if server_id else servers[0]
    for d in server["device"]:
        print(total, int(d["device_id"]), int(d["rank_id"]))
except StopIteration:
    sys.exit(f"error: server_id {server_id} is not in {path}")
except (ValueError, KeyError, TypeError, IndexError) as exc:
    sys.exit(f"error: {path} is not a valid HCCL rank table (JSON with server_list[].device[].device_id/rank_id): "
             f"{type(exc).__name__}: {exc}")
PY
) || exit 2
  [ -n "$DEVICES" ] || die "rank table $RANK_TABLE lists no device for this server"
  [ "$DRY_RUN" = 1 ] || mkdir -p "$OUTPUT_DIR"
  PIDS=()
  while read -r RANK_SIZE DEVICE_ID RANK_ID; do
    WORK="$OUTPUT_DIR/rank_$RANK_ID"
    ENVS=(RANK_TABLE_FILE="$RANK_TABLE" RANK_SIZE="$RANK_SIZE" RANK_ID="$RANK_ID" DEVICE_ID="$DEVICE_ID")
    if [ "$DRY_RUN" = 1 ]; then
      echo "cd $WORK && env ${ENVS[*]} python ${TRAIN[*]} --device_target Ascend > $WORK/launch.log 2>&1 &"
      continue
    fi
    mkdir -p "$WORK"
    (cd "$WORK" && env "${ENVS[@]}" python "${TRAIN[@]}" --device_target Ascend > "$WORK/launch.log" 2>&1) &
    PIDS+=($!)
    echo "rank $RANK_ID on device $DEVICE_ID: log $WORK/launch.log"
  done <<< "$DEVICES"
  [ "$DRY_RUN" = 1 ] && exit 0
  STATUS=0
  for pid in "${PIDS[@]}"; do wait "$pid" || STATUS=$?; done
  [ "$STATUS" = 0 ] || echo "error: a rank failed (exit $STATUS); see $OUTPUT_DIR/rank_*/launch.log" >&2
  exit "$STATUS"
fi

# ---- msrun mode ------------------------------------------------------------------------------------------
positive_int --worker_num "$WORKER_NUM"
LOCAL_WORKER_NUM="${LOCAL_WORKER_NUM:-$WORKER_NUM}"
positive_int --local_worker_num "$LOCAL_WORKER_NUM"
[ "$LOCAL_WORKER_NUM" -le "$WORKER_NUM" ] || die "--local_worker_num $LOCAL_WORKER_NUM exceeds --worker_num $WORKER_NUM"
[[ "$NODE_RANK" =~ ^[0-9]+$ ]] || die "--node_rank must be 0 or a positive integer, not '$NODE_RANK'"
positive_int --cluster_time_out "$TIME_OUT"
positive_int --master_port "$MASTER_PORT"
{ [ "$MASTER_PORT" -ge 1024 ] && [ "$MASTER_PORT" -le 65535 ]; } || die "--master_port must be in 1024..65535"
command -v msrun >/dev/null 2>&1 || die "msrun not found on PATH: it comes with MindSpore (pip install mindspore)"
if [ "$NODE_RANK" = 0 ] && ! python - "$MASTER_PORT" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
then
  die "--master_port $MASTER_PORT is already in use on this node; choose another"
fi
if [[ " $* " != *" --cpu_threads "* ]]; then
  # CPU workers on one node share its cores: one kernel thread pool each of cores/workers threads (measured on
  # 2 cores, 2 workers: 1 thread each 131.8 img/s vs MindSpore's default 115.3; bench/distributed_throughput.py).
  # Ignored on GPU/Ascend.
  THREADS=$(( $(nproc) / LOCAL_WORKER_NUM ))
  TRAIN+=(--cpu_threads "$(( THREADS > 0 ? THREADS : 1 ))")
fi
LOG_DIR="$(realpath -m "${LOG_DIR:-$OUTPUT_DIR/msrun_log}")"
CMD=(msrun --worker_num="$WORKER_NUM" --local_worker_num="$LOCAL_WORKER_NUM" --master_addr="$MASTER_ADDR"
     --master_port="$MASTER_PORT" --node_rank="$NODE_RANK" --log_dir="$LOG_DIR" --join=True
     --cluster_time_out="$TIME_OUT" "${TRAIN[@]}")
if [ "$DRY_RUN" = 1 ]; then echo "${CMD[*]}"; exit 0; fi
echo "${CMD[*]}"
echo "worker logs: $LOG_DIR/worker_<N>.log; run folder: $OUTPUT_DIR"
set +e
"${CMD[@]}"
STATUS=$?
set -e
if [ "$STATUS" != 0 ]; then
  echo "error: the distributed job failed (msrun exit $STATUS); see $LOG_DIR/worker_*.log and $OUTPUT_DIR/train*.log" >&2
fi
exit "$STATUS"
