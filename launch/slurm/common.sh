# Sourced by the sbatch templates beside this file: environment and the preemption relay.
# The templates run from the repository root (submit from there, or set PLMSCALE_ROOT).

PLMSCALE_ROOT=${PLMSCALE_ROOT:-$SLURM_SUBMIT_DIR}
cd "$PLMSCALE_ROOT" || exit 2
export PYTHONPATH="$PLMSCALE_ROOT${PYTHONPATH:+:$PYTHONPATH}"
[ -f "$PLMSCALE_ROOT/.venv/bin/activate" ] && source "$PLMSCALE_ROOT/.venv/bin/activate"

# --- NCCL on a cluster (NVIDIA's NCCL environment-variable documentation; PyTorch's for TORCH_*) ---
# NCCL_SOCKET_IFNAME: the IP interfaces NCCL bootstraps over (prefix match, "^" excludes). NCCL picks
#   one itself; name yours when it picks a management or docker interface, e.g. "ib0" or "^lo,docker".
# NCCL_IB_HCA: which InfiniBand adapters (and ports) to use, e.g. "mlx5_0,mlx5_1"; unset = all.
# NCCL_DEBUG=WARN prints only problems; set INFO (with NCCL_DEBUG_SUBSYS=INIT,NET) to see the
#   transports and rings NCCL chose when a job is slow or hangs at start.
# TORCH_NCCL_ASYNC_ERROR_HANDLING=1: a rank whose collective fails or times out aborts the
#   communicator and exits, so srun --kill-on-bad-exit ends the step instead of leaving it hung.
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
# export NCCL_SOCKET_IFNAME=ib0
# export NCCL_IB_HCA=mlx5
# One OpenMP thread per CPU SLURM gave each task (torch would otherwise start one per core).
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

echo "plmscale: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST"

# Run "$@" (the srun step) in the background so this shell can take SLURM's warning signal
# (--signal=B:USR1@N reaches only the batch shell) and pass it on with PLMSCALE_RELAY: "signal"
# sends SIGUSR1 to every process of the job's steps (scancel without --batch leaves this shell
# out), "file" creates $PLMSCALE_STOP_FILE, which the ranks poll each step (train.stop_file).
# Ranks then checkpoint after the current step and rank 0 runs `scontrol requeue`.
plmscale_run() {
    "$@" &
    local step=$! code relayed=0
    # shellcheck disable=SC2317  # called by the trap
    relay() {
        [ "$relayed" = 1 ] && return
        relayed=1
        echo "plmscale: $1 received, asking the ranks to checkpoint and requeue"
        if [ "${PLMSCALE_RELAY:-signal}" = file ]; then
            touch "$PLMSCALE_STOP_FILE"
        else
            scancel --signal=USR1 "$SLURM_JOB_ID"
        fi
    }
    trap 'relay USR1' USR1
    # SIGTERM (preemption, scancel) reaches the step's processes from SLURM itself: just wait.
    trap 'echo "plmscale: SIGTERM received; the ranks checkpoint on it themselves"' TERM
    while true; do
        wait "$step"
        code=$?
        # wait returns >128 when a trapped signal interrupted it while the step still runs
        kill -0 "$step" 2>/dev/null || break
    done
    return "$code"
}
