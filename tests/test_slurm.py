#!/usr/bin/python3
"""The SLURM scripts (slurm/*.sbatch, slurm/summarize) on a single-node SLURM cluster started
on this machine (docs/SLURM.md; ../shared/HPC.md section 4).

usage: test_slurm.py --ssltrain BIN --source REPO --tmp DIR [--deadline SECONDS]

1. Installs SLURM from Debian packages when sbatch/slurmctld/slurmd/munged are missing
   (apt-get update; apt-get install -y slurm-wlm munge), then starts munged, slurmctld and
   slurmd with every state, spool, log, pid and key file under DIR/cluster (ports chosen free,
   nothing written to /etc or /var). Exits 77 (ctest skip) with the reason only when SLURM
   cannot be installed or cannot start here.
2. Checks, on a 1024-image Fashion-MNIST subset:
   a) train.sbatch, 2 tasks, srun --mpi=pmix: COMPLETED, metrics.jsonl fields, the final
      checkpoint (step, datasets), OMP/OPENBLAS threads echoed, no REQUEUE marker;
   b) the same job through the mpirun fallback, sent USR1 (scancel --signal=USR1 --batch) after
      its first metrics line: it checkpoints, writes REQUEUE, requeues itself, resumes
      (restart 1) and finishes with a final checkpoint bitwise equal to a)'s in every dataset;
   c) a 3-task sweep array (optim.lr x loss.w2.weight) and slurm/summarize's CSV and Markdown;
   d) eval.sbatch and dump.sbatch on a)'s run; train.sbatch outside SLURM and with a missing
      job file fail with a message and a non-zero status;
   e) preemption: a low-partition job preempted by a high-partition one gets USR1
      (preempt_send_user_signal), checkpoints, requeues and finishes after the high job;
   f) scancel: the run checkpoints (REQUEUE marker, SIGTERM) and the job stays CANCELLED;
   and stops every daemon it started (also on failure), checking that none is left.
"""
import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

SKIP = 77
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(cmd, env=None, check_rc=True, timeout=120, **kw):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise Fail(f"{' '.join(cmd)} -> exit {p.returncode}:\n{p.stdout}")
    return p


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e})\n"


# ---- SLURM: install, start, stop ------------------------------------------------------------

DAEMONS = ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"]
CLIENTS = ["sbatch", "scontrol", "scancel", "squeue", "sinfo", "srun", "mungekey", "munge"]


def have_slurm():
    return all(os.access(d, os.X_OK) for d in DAEMONS) and all(shutil.which(c) for c in CLIENTS)


def ensure_slurm():
    if have_slurm():
        return
    if os.geteuid() != 0:
        raise Skip("SLURM is not installed and this test is not root, so it cannot apt-get install "
                   "slurm-wlm munge")
    log("SLURM missing: apt-get update && apt-get install -y slurm-wlm munge (a minute or so)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    p = run(["apt-get", *lock, "update"], env=env, check_rc=False, timeout=600)
    if p.returncode != 0:
        raise Skip("SLURM is not installed and apt-get update failed (no package network?):\n"
                   + p.stdout[-2000:])
    p = run(["apt-get", *lock, "install", "-y", "slurm-wlm", "munge"], env=env, check_rc=False,
            timeout=900)
    if p.returncode != 0 or not have_slurm():
        raise Skip("SLURM is not installed and apt-get install slurm-wlm munge failed:\n"
                   + p.stdout[-2000:])
    log("installed slurm-wlm and munge")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    """munged + slurmctld + slurmd for this machine, everything under base (HPC.md 4.2)."""

    def __init__(self, base):
        self.base = base
        self.conf = os.path.join(base, "slurm.conf")
        self.pids = {}
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        for k in list(self.env):  # a job's variables must not leak into our clients
            if k.startswith("SLURM_") and k != "SLURM_CONF":
                del self.env[k]
        self.munge_dir = os.path.join(base, "munge")

    def pidfiles(self):
        return {"slurmd": os.path.join(self.base, "slurmd.pid"),
                "slurmctld": os.path.join(self.base, "slurmctld.pid"),
                "munged": os.path.join(self.munge_dir, "munged.pid")}

    def logs(self):
        out = ""
        for f in ["log/slurmctld.log", "log/slurmd.log"]:
            out += f"--- {f} (tail) ---\n{tail(os.path.join(self.base, f), 25)}"
        out += f"--- munged.log (tail) ---\n{tail(os.path.join(self.munge_dir, 'munged.log'), 10)}"
        return out

    def _read_pid(self, name):
        try:
            with open(self.pidfiles()[name]) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def up(self):
        for d in ["state", "spool", "log"]:
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        # munged: its own socket, key, pid, log and seed; the socket path must fit a sockaddr_un
        # and the munge user must traverse every directory above it.
        sock = os.path.join(self.munge_dir, "munge.socket")
        traversable = run(["runuser", "-u", "munge", "--", "test", "-x", self.base],
                          check_rc=False).returncode == 0
        if len(sock) > 100 or not traversable:
            import tempfile
            self.munge_dir = tempfile.mkdtemp(prefix="ssl-slurm-munge-")
            os.chmod(self.munge_dir, 0o755)
            sock = os.path.join(self.munge_dir, "munge.socket")
            log(f"munge files in {self.munge_dir} (the build directory is not usable for its socket)")
        os.makedirs(self.munge_dir, exist_ok=True)
        os.chmod(self.munge_dir, 0o755)  # munged: "execute permissions for all required"
        shutil.chown(self.munge_dir, "munge", "munge")
        key = os.path.join(self.munge_dir, "munge.key")
        if not os.path.exists(key):
            p = run(["mungekey", "--create", f"--keyfile={key}"], check_rc=False)
            if p.returncode != 0:
                raise Skip(f"mungekey --create failed: {p.stdout}")
            shutil.chown(key, "munge", "munge")
            os.chmod(key, 0o400)
        p = run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", f"--socket={sock}",
                 f"--key-file={key}", f"--pid-file={self.munge_dir}/munged.pid",
                 f"--log-file={self.munge_dir}/munged.log", f"--seed-file={self.munge_dir}/munged.seed"],
                check_rc=False, env=self.env)
        if p.returncode != 0:
            raise Skip(f"munged cannot start here:\n{p.stdout}{tail(self.munge_dir + '/munged.log')}")
        self.pids["munged"] = self._read_pid("munged")
        p = subprocess.run(f"munge -S {sock} -n | unmunge -S {sock}", shell=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise Skip(f"munge/unmunge round trip failed:\n{p.stdout}")

        host = socket.gethostname().split(".")[0]
        host = run(["hostname", "-s"]).stdout.strip() or host
        ncpu = os.cpu_count()
        ncpu = int(run(["nproc"]).stdout.strip() or ncpu)
        self.ncpu = ncpu
        with open("/proc/meminfo") as f:
            mem_kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
        mem = max(256, mem_kib // 1024 - 1024)
        ctl_port, d_port = free_ports(2)
        b = self.base
        conf = f"""# written by tests/test_slurm.py: a one-node cluster of this machine
ClusterName=ssltest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool
SlurmctldPidFile={b}/slurmctld.pid
SlurmdPidFile={b}/slurmd.pid
SlurmctldLogFile={b}/log/slurmctld.log
SlurmdLogFile={b}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
MailProg=/bin/true
MinJobAge=600
KillWait=10
InactiveLimit=0
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
NodeName={host} NodeAddr=127.0.0.1 CPUs={ncpu} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=low Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30
PartitionName=high Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        log(f"slurm.conf: node {host}, {ncpu} CPUs, {mem} MiB, ports {ctl_port}/{d_port}, under {b}")
        p = run(["/usr/sbin/slurmctld", "-f", self.conf, "-c"], env=self.env, check_rc=False)
        if p.returncode != 0:
            raise Skip(f"slurmctld cannot start here (exit {p.returncode}):\n{p.stdout}{self.logs()}")
        self.pids["slurmctld"] = self._wait_pid("slurmctld")
        p = run(["/usr/sbin/slurmd", "-f", self.conf], env=self.env, check_rc=False)
        if p.returncode != 0:
            raise Skip(f"slurmd cannot start here (exit {p.returncode}):\n{p.stdout}{self.logs()}")
        self.pids["slurmd"] = self._wait_pid("slurmd")
        state = ""
        for _ in range(120):
            for name in ["slurmctld", "slurmd"]:
                pid = self.pids.get(name)
                if pid is None or not alive(pid):
                    raise Skip(f"{name} died right after starting (it cannot run in this "
                               f"container/VM?):\n{self.logs()}")
            state = run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, check_rc=False).stdout.strip()
            if state.split("\n")[0] == "idle":
                return
            time.sleep(0.25)
        raise Skip(f"the node never became idle (sinfo: {state!r}): slurmd cannot register here:\n"
                   + self.logs())

    def _wait_pid(self, name):
        for _ in range(100):
            pid = self._read_pid(name)
            if pid:
                return pid
            time.sleep(0.05)
        return None

    def down(self):
        """scancel everything, stop the daemons by their pids, then anything else that carries
        this cluster's SLURM_CONF (job steps, slurmstepd): nothing of ours keeps running."""
        ctl = self.pids.get("slurmctld") or self._read_pid("slurmctld")
        if os.path.exists(self.conf) and ctl and alive(ctl):
            try:
                run(["scancel", "--quiet", "-u", "root"], env=self.env, check_rc=False, timeout=20)
                for _ in range(60):
                    q = run(["squeue", "-h", "-o", "%i"], env=self.env, check_rc=False, timeout=20)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.25)
            except subprocess.TimeoutExpired:
                pass
        pids = {n: p for n, p in self.pids.items() if p}
        for name in ["slurmd", "slurmctld", "munged"]:
            p = self._read_pid(name)
            if p:
                pids[name] = p
        for p in pids.values():
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        stubborn = wait_gone(pids.values(), 10)
        for p in stubborn:
            os.kill(p, signal.SIGKILL)
        wait_gone(stubborn, 5)
        ours = [p for p in processes_with_env(f"SLURM_CONF={self.conf}") if p != os.getpid()]
        if ours:
            log(f"warning: killing leftover processes of this cluster: {ours}")
            for p in ours:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_gone(ours, 5)
        left = [p for p in list(pids.values()) + ours if alive(p)]
        return left


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, seconds):
    pids = list(pids)
    end = time.time() + seconds
    while time.time() < end:
        pids = [p for p in pids if alive(p)]
        if not pids:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def processes_with_env(needle):
    out = []
    nb = needle.encode() + b"\0"
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if (b"\0" + env).find(b"\0" + nb) >= 0 and alive(int(d)):
            out.append(int(d))
    return out


# ---- jobs -----------------------------------------------------------------------------------

def job_records(c, jobid):
    """{task id or None: {field: value}} from scontrol show job -o (one line per array task)."""
    p = run(["scontrol", "show", "job", "-o", str(jobid)], env=c.env, check_rc=False)
    recs = {}
    for line in p.stdout.splitlines():
        f = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
        if "JobState" in f:
            recs[f.get("ArrayTaskId")] = f
    return recs


DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
        "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def wait_job(c, jobid, what, timeout=300, outputs=()):
    """Polls until every record of jobid has ended; returns the records."""
    end = time.time() + timeout
    recs = {}
    while time.time() < end:
        recs = job_records(c, jobid)
        if recs and all(r["JobState"] in DONE for r in recs.values()) \
                and not any(r.get("ArrayTaskId", "").startswith("[") for r in recs.values()):
            return recs
        time.sleep(0.25)
    raise Fail(f"{what}: job {jobid} not done after {timeout} s: "
               f"{[(k, r['JobState'], r.get('Reason')) for k, r in recs.items()]}\n"
               + "".join(f"--- {o} ---\n{tail(o, 40)}" for o in outputs) + c.logs())


def sbatch(c, args, env_extra=None):
    env = dict(c.env, **(env_extra or {}))
    p = run(["sbatch", "--parsable", *args], env=env)
    return int(p.stdout.strip().split(";")[0].split("_")[0])


def wait_first_metrics(c, jobid, metrics, out, what, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
            return read_jsonl(metrics)[0]["step"]
        r = job_records(c, jobid).get(None, {})
        check(r.get("JobState") not in DONE, f"{what}: job {jobid} ended before its first metrics "
              f"line: {r.get('JobState')} {r.get('ExitCode')}\n{tail(out, 40)}")
        time.sleep(0.1)
    raise Fail(f"{what}: no metrics line after {timeout} s:\n{tail(out, 40)}")


def wait_requeued(c, jobid, out, what, timeout=120):
    end = time.time() + timeout
    r = {}
    while time.time() < end:
        r = job_records(c, jobid).get(None, {})
        if r.get("JobState") == "PENDING" and r.get("Restarts") == "1":
            return r
        check(r.get("JobState") not in DONE,
              f"{what}: job {jobid} ended instead of requeueing: {r.get('JobState')} "
              f"{r.get('ExitCode')}\n" + tail(out, 40))
        time.sleep(0.2)
    raise Fail(f"{what}: job {jobid} not requeued after {timeout} s: {r.get('JobState')} "
               f"{r.get('Reason')}\n" + tail(out, 40))


def start_now(c, jobid):
    """Skips the 120 s BeginTime of a requeued job (HPC.md 4.4). Not at once: slurmd revokes the
    old instance's credential at the requeue, with one-second resolution, and a new instance
    allocated within that second is killed ("Job credential revoked") and the job ends FAILED."""
    t = time.time()
    while time.time() - t < 30:
        q = run(["squeue", "-h", "-t", "CG", "-o", "%i"], env=c.env, check_rc=False).stdout.split()
        if str(jobid) not in q:
            break
        time.sleep(0.2)
    time.sleep(2.0)
    run(["scontrol", "update", f"JobId={jobid}", "StartTime=now"], env=c.env)


def marker_step(run_dir, what):
    marker = os.path.join(run_dir, "REQUEUE")
    check(os.path.exists(marker), f"{what}: no REQUEUE marker in {run_dir}")
    why = open(marker).read().strip()
    m = re.search(r"step (\d+)", why)
    ckpts = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    check(m is not None and f"step-{int(m.group(1)):08d}.h5" in ckpts,
          f"{what}: marker {why!r}, checkpoints {ckpts}")
    return int(m.group(1)), why, ckpts


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


STEP_FIELDS = {"step", "epoch", "loss", "terms", "lr", "grad_norm", "images_per_s"}
EPOCH_FIELDS = {"epoch", "step", "knn_top1", "knn_top5", "linear_top1", "linear_top5", "w2",
                "uniformity", "alignment", "effective_rank", "z_std"}


def split_metrics(lines):
    steps = [o for o in lines if "loss" in o]
    epochs = [o for o in lines if "knn_top1" in o]
    return steps, epochs


def h5_datasets(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
        step = int(f.attrs["step"])
    return out, step


# ---- the checks -----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssltrain", required=True)
    ap.add_argument("--source", required=True, help="the repository (slurm/, tests/)")
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--deadline", type=float, default=840,
                    help="seconds before the test stops itself (ctest's TIMEOUT is 900)")
    A = ap.parse_args()

    def out_of_time(sig, frame):
        raise Fail(f"out of time ({A.deadline:.0f} s) or stopped by signal {sig}")
    # ctest kills the test on its timeout, which would leave the daemons running: stop first
    signal.signal(signal.SIGALRM, out_of_time)
    signal.signal(signal.SIGTERM, out_of_time)
    signal.signal(signal.SIGINT, out_of_time)
    signal.alarm(int(A.deadline))
    A.ssltrain = os.path.abspath(A.ssltrain)
    slurm_dir = os.path.join(os.path.abspath(A.source), "slurm")

    try:
        ensure_slurm()
    except Skip as e:
        print(f"test_slurm: SKIP: {e}", flush=True)
        return SKIP
    try:
        import h5py  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        raise Fail("h5py/numpy missing for /usr/bin/python3 (apt-get install python3-h5py)")

    base = os.path.abspath(A.tmp)
    # a cluster of an earlier run that died without stopping: stop it first
    old = Cluster(os.path.join(base, "cluster"))
    if os.path.exists(old.conf):
        old.down()
    shutil.rmtree(base, ignore_errors=True)
    work = os.path.join(base, "work")
    os.makedirs(work)
    c = Cluster(os.path.join(base, "cluster"))
    os.makedirs(c.base)
    t_up = time.time()
    try:
        try:
            c.up()
        except Skip as e:
            print(f"test_slurm: SKIP: SLURM cannot start on this machine: {e}", flush=True)
            return SKIP
        log(f"cluster up in {time.time() - t_up:.1f} s (munged {c.pids.get('munged')}, "
            f"slurmctld {c.pids.get('slurmctld')}, slurmd {c.pids.get('slurmd')})")
        checks(c, A, slurm_dir, work)
    finally:
        t_down = time.time()
        left = c.down()
        log(f"cluster down in {time.time() - t_down:.1f} s")
        if left:
            raise Fail(f"processes left running after stopping the cluster: {left}")
        if c.munge_dir != os.path.join(c.base, "munge"):
            shutil.rmtree(c.munge_dir, ignore_errors=True)
    log(f"test_slurm: all checks passed in {time.time() - T0:.1f} s")
    return 0


def checks(c, A, slurm_dir, work):
    data = os.path.join(work, "fmnist.h5")
    run(["/usr/bin/python3", os.path.join(A.source, "tests", "make_fmnist_subset.py"), data,
         "--train", "1024", "--test", "512"])
    job = os.path.join(work, "fmnist.yaml")
    with open(job, "w") as f:
        f.write(f"""# tests/test_slurm.py: the short Fashion-MNIST job
method:
  name: vicreg
data:
  dataset: hdf5
  path: "{data}"
  batch: 64
model:
  projector:
    hidden: [128]
    out: 64
train:
  epochs: 2
  log_every: 2
eval:
  train_samples: 0
  test_samples: 0
  linear_epochs: 5
ckpt:
  every: 5
run:
  dir: runs   # relative: to the submission directory
""")
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    train = os.path.join(slurm_dir, "train.sbatch")
    root_env = {"SSLTRAIN": A.ssltrain, "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    runs = os.path.join(work, "runs")

    # d0) the failure paths: outside SLURM, and a missing job file inside it
    env = {k: v for k, v in c.env.items() if not k.startswith("SLURM_")}
    for script in ["train", "sweep", "eval", "dump"]:
        p = run(["bash", os.path.join(slurm_dir, f"{script}.sbatch"), job], env=env, check_rc=False)
        check(p.returncode == 2 and "not inside a SLURM job" in p.stdout,
              f"{script}.sbatch outside SLURM: exit {p.returncode}, output {p.stdout!r}")
    log(f"outside SLURM: train/sweep/eval/dump.sbatch exit 2: {p.stdout.strip()}")
    out_missing = os.path.join(logs, "missing-%j.out")
    j = sbatch(c, ["-D", work, "-o", out_missing, train, "no-such-job.yaml"], root_env)
    r = wait_job(c, j, "missing job file", 60)[None]
    text = open(out_missing.replace("%j", str(j))).read()
    check(r["JobState"] == "FAILED" and r["ExitCode"] == "2:0"
          and "job file 'no-such-job.yaml' not found" in text,
          f"missing job file: {r['JobState']} {r['ExitCode']}: {text!r}")
    log(f"missing job file: job {j} {r['JobState']} ExitCode={r['ExitCode']}: {text.strip()}")

    # a) 4 epochs, 2 ranks, srun --mpi=pmix (also the uninterrupted reference for b)
    out_a = os.path.join(logs, "a-%j.out")
    t = time.time()
    ja = sbatch(c, ["-D", work, "-o", out_a, "--ntasks-per-node=2", "--cpus-per-task=1",
                    "-J", "ssl-a", train, job, "train.epochs=4"], root_env)
    out_a = out_a.replace("%j", str(ja))
    r = wait_job(c, ja, "a) train.sbatch", 300, [out_a])[None]
    ta = time.time() - t
    text = open(out_a).read()
    check(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0",
          f"a) job {ja}: {r['JobState']} {r['ExitCode']}\n{text[-3000:]}")
    run_a = os.path.join(runs, "fmnist")  # run.dir from the job file, run.name from its name
    check(os.path.isdir(run_a), f"a) no run directory {run_a}:\n{text[-2000:]}")
    check("2 ranks on 1 nodes, 1 threads per rank (OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)" in text,
          f"a) threads not echoed:\n{text[:2000]}")
    check("srun --mpi=pmix --cpus-per-task=1 " in text, f"a) not launched by srun --mpi=pmix:\n{text[:2000]}")
    steps, epochs = split_metrics(read_jsonl(os.path.join(run_a, "metrics.jsonl")))
    check(len(steps) == 32 and [s["step"] for s in steps] == list(range(2, 65, 2)),
          f"a) step lines: {[s['step'] for s in steps]}")
    check(all(STEP_FIELDS <= set(s) for s in steps), f"a) step line fields: {steps[0]}")
    check([e["epoch"] for e in epochs] == [0, 1, 2, 3] and epochs[-1]["step"] == 64,
          f"a) epoch lines: {epochs}")
    check(all(EPOCH_FIELDS <= set(e) for e in epochs), f"a) epoch line fields: {epochs[-1]}")
    check(epochs[-1]["knn_top1"] > 30 and epochs[-1]["linear_top1"] > 30,
          f"a) accuracies at chance: {epochs[-1]}")
    latest = os.path.join(run_a, "checkpoints", "latest.h5")
    check(os.path.islink(latest) and os.readlink(latest) == "step-00000064.h5",
          f"a) latest.h5: {os.path.islink(latest) and os.readlink(latest)}")
    ds_a, step_a = h5_datasets(latest)
    check(step_a == 64 and any(k.startswith("model/") for k in ds_a),
          f"a) checkpoint step {step_a}, datasets {sorted(ds_a)[:5]}")
    check(not os.path.exists(os.path.join(run_a, "REQUEUE")), "a) REQUEUE marker after a clean run")
    log(f"a) job {ja} COMPLETED in {ta:.1f} s (submit to end): 32 step lines, 4 epoch lines, "
        f"final knn_top1 {epochs[-1]['knn_top1']:.2f} linear_top1 {epochs[-1]['linear_top1']:.2f} "
        f"w2 {epochs[-1]['w2']:.4f}; latest.h5 -> step 64 ({len(ds_a)} datasets)")

    # b) the same job through mpirun, USR1 to the batch shell after the first metrics line
    out_b = os.path.join(logs, "b-%j.out")
    run_b = os.path.join(runs, "fmnist-requeue")
    t = time.time()
    jb = sbatch(c, ["-D", work, "-o", out_b, "--ntasks-per-node=2", "--cpus-per-task=1",
                    "-J", "ssl-b", train, job, "train.epochs=4", "run.name=fmnist-requeue"],
                dict(root_env, SSLTRAIN_LAUNCHER="mpirun"))
    out_b = out_b.replace("%j", str(jb))
    metrics_b = os.path.join(run_b, "metrics.jsonl")
    first = wait_first_metrics(c, jb, metrics_b, out_b, "b)")
    run(["scancel", "--signal=USR1", "--batch", str(jb)], env=c.env)
    t_sig = time.time()
    log(f"b) job {jb}: first metrics line (step {first}) {t_sig - t:.1f} s after submission; "
        "sent USR1 to the batch shell")
    # the job must come back PENDING (requeued; BeginTime now + 120 s, HPC.md 4.4)
    r = wait_requeued(c, jb, out_b, "b)")
    t_req = time.time()
    marker = os.path.join(run_b, "REQUEUE")
    ck_step, why, ckpts = marker_step(run_b, "b)")
    check(ck_step < 64 and why.startswith("SIGUSR1"), f"b) marker {why!r}")
    text = open(out_b).read()
    check("got SIGUSR1; forwarding it to the ranks" in text and "requeueing job" in text
          and "mpirun -x OMP_NUM_THREADS" in text, f"b) log of the first run:\n{text[-3000:]}")
    log(f"b) requeued {t_req - t_sig:.1f} s after the signal (Reason={r.get('Reason')}): "
        f"REQUEUE says {why!r}; checkpoints {ckpts}")
    start_now(c, jb)
    r = wait_job(c, jb, "b) resumed run", 300, [out_b])[None]
    tb = time.time() - t
    text = open(out_b).read()
    check(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" and r.get("Restarts") == "1",
          f"b) job {jb} after requeue: {r['JobState']} {r['ExitCode']} Restarts={r.get('Restarts')}\n"
          + text[-3000:])
    check("(restart 1)" in text, f"b) the second run does not say restart 1:\n{text[-3000:]}")
    check(not os.path.exists(marker), "b) REQUEUE marker left after the resumed run finished")
    steps_b, epochs_b = split_metrics(read_jsonl(metrics_b))
    sb = [s["step"] for s in steps_b]
    check(sb == sorted(set(sb)) and sb[-1] == 64 and min(x for x in sb if x > ck_step) <= ck_step + 2,
          f"b) step lines across the resume (checkpoint {ck_step}): {sb}")
    check([e["epoch"] for e in epochs_b] == [0, 1, 2, 3], f"b) epoch lines: {epochs_b}")
    ds_b, step_b = h5_datasets(os.path.join(run_b, "checkpoints", "latest.h5"))
    check(step_b == 64, f"b) final checkpoint step {step_b}")
    check(sorted(ds_a) == sorted(ds_b), f"b) dataset names differ: {set(ds_a) ^ set(ds_b)}")
    import numpy as np
    differ = [k for k in ds_a if ds_a[k].dtype != ds_b[k].dtype or ds_a[k].shape != ds_b[k].shape
              or ds_a[k].tobytes() != ds_b[k].tobytes()]
    n_model = sum(k.startswith("model/") for k in ds_a)
    if differ:
        worst = max((float(np.max(np.abs(ds_a[k].astype(np.float64) - ds_b[k].astype(np.float64))))
                     for k in differ if ds_a[k].shape == ds_b[k].shape), default=float("nan"))
        raise Fail(f"b) the resumed run's final checkpoint differs from the uninterrupted run in "
                   f"{len(differ)} of {len(ds_a)} datasets (max |diff| {worst:.3g}): {differ[:8]}")
    check(epochs_b[-1] == dict(epochs[-1]), f"b) final epoch metrics differ: {epochs_b[-1]} vs {epochs[-1]}")
    log(f"b) resumed from step {ck_step}, COMPLETED with Restarts=1, {tb:.1f} s from submission "
        f"(incl. the requeue); final checkpoint bitwise equal to a)'s in all {len(ds_a)} datasets "
        f"({n_model} under model/) and the same final epoch metrics")

    # c) a 3-task sweep array, 1 rank each, and the summary
    sweep = os.path.join(work, "lr-w2.txt")
    with open(sweep, "w") as f:
        f.write("# optim.lr x loss.w2.weight\n"
                "optim.lr=0.05 loss.w2.weight=0\n"
                "\n"
                "optim.lr=0.05 loss.w2.weight=1\n"
                "optim.lr=0.2 loss.w2.weight=1\n")
    out_c = os.path.join(logs, "sweep-%A_%a.out")
    t = time.time()
    jc = sbatch(c, ["-D", work, "-o", out_c, "--array=0-2", "--ntasks-per-node=1", "--cpus-per-task=1",
                    "-J", "ssl-sweep", os.path.join(slurm_dir, "sweep.sbatch"), job, sweep,
                    "train.epochs=1"], root_env)
    outs = [out_c.replace("%A", str(jc)).replace("%a", str(i)) for i in range(3)]
    recs = wait_job(c, jc, "c) sweep", 300, outs)
    tc = time.time() - t
    check(sorted(recs) == ["0", "1", "2"] and all(r["JobState"] == "COMPLETED" for r in recs.values()),
          f"c) sweep tasks: {[(k, r['JobState'], r['ExitCode']) for k, r in recs.items()]}\n"
          + "".join(tail(o, 30) for o in outs))
    names = [f"lr-w2-{i:03d}" for i in range(3)]
    for n in names:
        check(os.path.exists(os.path.join(runs, n, "checkpoints", "latest.h5")), f"c) {n}: no checkpoint")
    prefix = os.path.join(work, "lr-w2-summary")
    p = run([os.path.join(slurm_dir, "summarize"), "--out", prefix] + [os.path.join(runs, n) for n in names],
            cwd=work)
    with open(prefix + ".csv") as f:
        rows = list(csv.DictReader(f))
    with open(prefix + ".csv") as f:
        header = next(csv.reader(f))
    want = ["run", "optim.lr", "loss.w2.weight", "status", "epoch", "step", "loss", "knn_top1",
            "linear_top1", "w2", "effective_rank"]
    check(header[0] == "run" and sorted(header[1:3]) == sorted(want[1:3]) and header[3:] == want[3:],
          f"c) CSV columns {header}, expected {want} (override columns in any order)")
    check([r["run"] for r in rows] == names, f"c) CSV rows {[r['run'] for r in rows]}")
    lrs = [(float(r["optim.lr"]), float(r["loss.w2.weight"])) for r in rows]
    check(lrs == [(0.05, 0.0), (0.05, 1.0), (0.2, 1.0)], f"c) override columns {lrs}")
    for r in rows:
        check(r["status"] == "finished" and r["epoch"] == "0" and r["step"] == "16",
              f"c) row {r}")
        for k in ["loss", "knn_top1", "linear_top1", "w2", "effective_rank"]:
            float(r[k])
    for n, r in zip(names, rows):  # the table holds each run's last epoch line
        last = split_metrics(read_jsonl(os.path.join(runs, n, "metrics.jsonl")))[1][-1]
        check(abs(float(r["knn_top1"]) - last["knn_top1"]) < 1e-4 * max(1, abs(last["knn_top1"]))
              and abs(float(r["w2"]) - last["w2"]) < 1e-5 * max(1, abs(last["w2"])), f"c) {n}: {r} vs {last}")
    md = open(prefix + ".md").read().splitlines()
    check(len(md) == 5 and md[0] == "| " + " | ".join(header) + " |" and md[1].count("---") == len(want)
          and all(md[2 + i].startswith(f"| {n} |") for i, n in enumerate(names)),
          "c) Markdown table:\n" + "\n".join(md))
    text = open(outs[2]).read()
    check("run.name=lr-w2-002 optim.lr=0.2 loss.w2.weight=1" in text, f"c) task 2 log:\n{text[:1500]}")
    log(f"c) sweep {jc}: 3 tasks COMPLETED in {tc:.1f} s; summary:\n" + "\n".join(md))

    # d) eval.sbatch and dump.sbatch on a)'s run directory
    out_e = os.path.join(logs, "eval-%j.out")
    je = sbatch(c, ["-D", work, "-o", out_e, "--ntasks-per-node=2", os.path.join(slurm_dir, "eval.sbatch"),
                    "runs/fmnist", "eval.train_samples=512", "eval.test_samples=256"], root_env)
    out_d = os.path.join(logs, "dump-%j.out")
    jd = sbatch(c, ["-D", work, "-o", out_d, "--ntasks-per-node=2", os.path.join(slurm_dir, "dump.sbatch"),
                    "runs/fmnist", "--split", "test"], root_env)
    out_e, out_d = out_e.replace("%j", str(je)), out_d.replace("%j", str(jd))
    re_ = wait_job(c, je, "d) eval.sbatch", 120, [out_e])[None]
    rd = wait_job(c, jd, "d) dump.sbatch", 120, [out_d])[None]
    check(re_["JobState"] == "COMPLETED", f"d) eval job: {re_['JobState']} {re_['ExitCode']}\n{tail(out_e)}")
    check(rd["JobState"] == "COMPLETED", f"d) dump job: {rd['JobState']} {rd['ExitCode']}\n{tail(out_d)}")
    ev = json.load(open(os.path.join(run_a, "eval.json")))
    check({"knn_top1", "linear_top1", "w2", "effective_rank"} <= set(ev) and ev["knn_top1"] > 30,
          f"d) eval.json: {ev}")
    import h5py
    with h5py.File(os.path.join(run_a, "embeddings-test.h5"), "r") as f:
        shapes = {k: f[k].shape for k in ["h", "z", "labels"]}
    check(shapes == {"h": (512, 128), "z": (512, 64), "labels": (512,)}, f"d) dump shapes {shapes}")
    log(f"d) eval job {je}: knn_top1 {ev['knn_top1']:.2f} linear_top1 {ev['linear_top1']:.2f} -> "
        f"runs/fmnist/eval.json; dump job {jd}: embeddings-test.h5 {shapes}")

    # e) preemption: a job of the low partition, preempted by a job of the high one
    # (PreemptMode=REQUEUE, SlurmctldParameters=preempt_send_user_signal: USR1 to the batch shell)
    out_p = os.path.join(logs, "preempt-%j.out")
    run_p = os.path.join(runs, "fmnist-preempt")
    t = time.time()
    # 8 epochs (128 steps): long enough that the scheduler preempts it before it can finish
    jp = sbatch(c, ["-D", work, "-o", out_p, "-p", "low", "--ntasks-per-node=2", "-J", "ssl-low", train,
                    job, "run.name=fmnist-preempt", "train.epochs=8"], root_env)
    out_p = out_p.replace("%j", str(jp))
    wait_first_metrics(c, jp, os.path.join(run_p, "metrics.jsonl"), out_p, "e)")
    jh = sbatch(c, ["-D", work, "-o", os.path.join(logs, "high-%j.out"), "-p", "high",
                    f"--ntasks={c.ncpu}", "-J", "ssl-high", "--wrap", "sleep 1"])
    wait_requeued(c, jp, out_p, "e) preempted job")
    ck_p, why_p, _ = marker_step(run_p, "e)")
    check(why_p.startswith("SIGUSR1"), f"e) marker {why_p!r}")
    rh = wait_job(c, jh, "e) the high-priority job", 60)[None]
    check(rh["JobState"] == "COMPLETED", f"e) high job {rh['JobState']}")
    start_now(c, jp)
    r = wait_job(c, jp, "e) resumed low job", 300, [out_p])[None]
    text = open(out_p).read()
    steps_p = [o["step"] for o in split_metrics(read_jsonl(os.path.join(run_p, "metrics.jsonl")))[0]]
    check(r["JobState"] == "COMPLETED" and r.get("Restarts") == "1" and steps_p[-1] == 128
          and steps_p == sorted(set(steps_p)) and "(restart 1)" in text,
          f"e) job {jp}: {r['JobState']} Restarts={r.get('Restarts')} steps {steps_p}\n{text[-2000:]}")
    log(f"e) low-partition job {jp} preempted by high job {jh}: checkpointed ({why_p!r}), requeued, "
        f"the high job ran, resumed from step {ck_p} and COMPLETED in {time.time() - t:.1f} s")

    # f) scancel: SIGTERM to the batch shell and the ranks: checkpoint, but no requeue
    out_x = os.path.join(logs, "cancel-%j.out")
    run_x = os.path.join(runs, "fmnist-cancel")
    jx = sbatch(c, ["-D", work, "-o", out_x, "--ntasks-per-node=2", "-J", "ssl-cancel", train, job,
                    "run.name=fmnist-cancel"], root_env)
    out_x = out_x.replace("%j", str(jx))
    wait_first_metrics(c, jx, os.path.join(run_x, "metrics.jsonl"), out_x, "f)")
    run(["scancel", str(jx)], env=c.env)
    r = wait_job(c, jx, "f) cancelled job", 60, [out_x])[None]
    # SLURM marks the job CANCELLED at once; the ranks and the script still have KillWait
    # (10 s) to checkpoint and say so
    end = time.time() + 15
    while time.time() < end and "not requeueing" not in open(out_x).read():
        time.sleep(0.2)
    r = job_records(c, jx)[None]
    text = open(out_x).read()
    ck_x, why_x, _ = marker_step(run_x, "f)")
    check(r["JobState"] == "CANCELLED" and r.get("Restarts") == "0" and why_x.startswith("SIGTERM")
          and "not requeueing" in text,
          f"f) job {jx}: {r['JobState']} Restarts={r.get('Restarts')} marker {why_x!r}\n{text[-2000:]}")
    log(f"f) scancel {jx}: CANCELLED, not requeued, checkpointed ({why_x!r})")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"test_slurm: FAIL: {e}", flush=True)
        sys.exit(1)
