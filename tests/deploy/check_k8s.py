#!/usr/bin/env python3
"""Renders deploy/k8s with `kubectl kustomize` and checks what the manifests promise.

Usage: check_k8s.py DEPLOY_K8S_DIR [--kubectl PATH]

Both the base and the gpu overlay must render and parse as YAML, and then:
  - the Deployment's selector matches its pods, every Service selects those pods, and the
    ServiceMonitor selects a Service that has a `metrics` port;
  - gRPC liveness and readiness probes on 50051; terminationGracePeriodSeconds above the
    server's 30 s drain; non-root, no privilege escalation, read-only root filesystem, with
    the state volume (a PersistentVolumeClaim that exists) writable at /var/lib/verdict;
  - a headless Service and a ClusterIP Service with grpc 50051 and metrics 9464;
  - the flags (the ConfigMap's flag file, read through --flagfile, then the args) are flags
    verdictd defines, and name the required ones; files they point at are on mounted volumes
    whose ConfigMap or Secret exists;
  - the overlay asks for an nvidia.com/gpu, runs on GPU nodes, tolerates their taint, uses a
    CUDA image tag and --default_device=cuda:0.
The multi-node training examples (training/pytorchjob and training/indexed-job) must render too:
every rank runs verdict-train with flags it defines (read from core/train/
verdict_train_main.cc) on --device=cpu (ranks average gradients with Gloo) with a CPU request,
non-root with a read-only root, its data, checkpoints and output on the ReadWriteMany claim
defined there; the PyTorchJob has
one Master and at least one Worker; the Indexed Job's ranks get RANK from their completion
index, WORLD_SIZE equal to completions and parallelism, and MASTER_ADDR naming pod 0 under a
headless Service that selects them and carries MASTER_PORT.
Exits 0 if all is well, 1 with one line per problem, 77 if kubectl is not installed.
"""

import os
import re
import shutil
import subprocess
import sys

import yaml

DRAIN_SECONDS = 30
STATE_DIR = "/var/lib/verdict"
# The flags verdictd defines (server/main.cc), as far as deploy/ uses them.
# The flags server/main.cc defines (plus Abseil's --flagfile).
KNOWN_FLAGS = {
    "host", "port", "metrics_port", "state_dir", "data_dir", "model_dir",
    "max_concurrent_jobs", "max_queued_jobs", "default_device", "max_message_bytes",
    "max_dataset_bytes", "max_items_per_request", "max_item_bytes", "max_batch_tokens",
    "max_batch_items", "max_queue_delay_ms", "max_queued_items", "threads", "preload_models",
    "drain_grace_seconds", "log_format", "log_level", "token_file", "tls_cert", "tls_key",
    "tls_client_ca", "metrics_address", "metrics_basic_auth_file", "flagfile",
}
REQUIRED_FLAGS = {
    "host": "0.0.0.0", "port": "50051", "metrics_port": "9464", "state_dir": STATE_DIR,
    "data_dir": None, "model_dir": None, "max_concurrent_jobs": None,
}
FILE_FLAGS = ("token_file", "tls_cert", "tls_key", "tls_client_ca", "metrics_basic_auth_file")


SHARED_DIR = "/shared"
TRAIN_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core",
                          "train", "verdict_train_main.cc")
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def train_flags():
    """The flags verdict-train defines, from its source."""
    with open(TRAIN_MAIN) as f:
        return set(re.findall(r"ABSL_FLAG\(\s*[\w:]+\s*,\s*(\w+)\s*,", f.read()))


def render(kubectl, path):
    result = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"kubectl kustomize {path} failed:\n{result.stderr}"
    try:
        return [d for d in yaml.safe_load_all(result.stdout) if d], None
    except yaml.YAMLError as error:
        return None, f"kubectl kustomize {path} printed YAML that does not parse: {error}"


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse_flags(lines):
    """{name: value} from --name=value lines (later ones win), plus problems."""
    flags, problems = {}, []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--") or "=" not in line:
            problems.append(f"flag {line!r} is not --name=value")
            continue
        name, value = line[2:].split("=", 1)
        if name not in KNOWN_FLAGS:
            problems.append(f"flag --{name} is not one verdictd defines")
        flags[name] = value
    return flags, problems


def mounted_file(container, volumes, path):
    """(volume, key) if `path` lies on one of the container's mounts, else (None, None)."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return volumes.get(mount["name"]), path[len(prefix):]
    return None, None


def check_render(docs, where):
    problems = []

    def problem(text):
        problems.append(f"{where}: {text}")

    deployments = by_kind(docs, "Deployment")
    if len(deployments) != 1:
        problem(f"expected one Deployment, found {len(deployments)}")
        return problems, {}, None
    deployment = deployments[0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    if not selects(spec.get("selector", {}).get("matchLabels"), pod_labels):
        problem("the Deployment's selector does not match its pod labels")

    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= DRAIN_SECONDS:
        problem(f"terminationGracePeriodSeconds {grace} is not above the {DRAIN_SECONDS} s drain")
    pod_security = pod.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True or pod_security.get("runAsUser", 0) == 0:
        problem("the pod does not run as a non-root user")

    containers = pod.get("containers", [])
    if len(containers) != 1:
        problem(f"expected one container, found {len(containers)}")
        return problems, {}, None
    container = containers[0]
    security = container.get("securityContext", {})
    if security.get("readOnlyRootFilesystem") is not True:
        problem("the root filesystem is not read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problem("privilege escalation is allowed")
    if "ALL" not in security.get("capabilities", {}).get("drop", []):
        problem("capabilities are not all dropped")

    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("grpc") != 50051 or ports.get("metrics") != 9464:
        problem(f"container ports are {ports}, expected grpc 50051 and metrics 9464")
    for probe in ("livenessProbe", "readinessProbe"):
        grpc = container.get(probe, {}).get("grpc")
        if not grpc or grpc.get("port") != 50051:
            problem(f"{probe} is not a gRPC probe on port 50051")
    liveness = container.get("livenessProbe", {})
    if liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) <= DRAIN_SECONDS:
        problem("the liveness probe would restart a server that is draining")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    state = [m for m in container.get("volumeMounts", []) if m["mountPath"] == STATE_DIR]
    if not state:
        problem(f"nothing is mounted at {STATE_DIR}")
    else:
        if state[0].get("readOnly"):
            problem(f"{STATE_DIR} is mounted read-only")
        claim = volumes.get(state[0]["name"], {}).get("persistentVolumeClaim", {})
        claims = {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
        if claim.get("claimName") not in claims:
            problem(f"{STATE_DIR} is not on a PersistentVolumeClaim defined here")

    config_maps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}

    def file_exists(path):
        volume, key = mounted_file(container, volumes, path)
        if volume is None:
            return False
        if "configMap" in volume:
            source = config_maps.get(volume["configMap"]["name"], {})
        elif "secret" in volume:
            source = secrets.get(volume["secret"]["secretName"], {})
        else:
            return True  # on a writable volume: the server's own files
        return key in {**source.get("data", {}), **source.get("stringData", {})}

    args = container.get("args", []) + container.get("command", [])[1:]
    lines = []
    for arg in args:
        if arg.startswith("--flagfile="):
            for path in arg.split("=", 1)[1].split(","):
                volume, key = mounted_file(container, volumes, path)
                config_map = config_maps.get((volume or {}).get("configMap", {}).get("name"))
                if config_map is None or key not in config_map.get("data", {}):
                    problem(f"--flagfile {path} is not a file of a ConfigMap defined here")
                else:
                    lines += config_map["data"][key].splitlines()
        lines.append(arg)
    flags, flag_problems = parse_flags(lines)
    problems += [f"{where}: {p}" for p in flag_problems]
    for name, value in REQUIRED_FLAGS.items():
        if name not in flags:
            problem(f"--{name} is not set")
        elif value is not None and flags[name] != value:
            problem(f"--{name}={flags[name]}, expected {value}")
    for name in FILE_FLAGS:
        if name in flags and not file_exists(flags[name]):
            problem(f"--{name}={flags[name]} is not a file of a mounted ConfigMap or Secret")
    for name in ("data_dir", "model_dir"):
        if name in flags and not flags[name].startswith(STATE_DIR):
            problem(f"--{name} is outside the state volume")

    services = by_kind(docs, "Service")
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    cluster = [s for s in services if s["spec"].get("clusterIP") != "None"]
    if not headless:
        problem("no headless Service (clusterIP: None)")
    for service in services:
        if not selects(service["spec"].get("selector"), pod_labels):
            problem(f"Service {service['metadata']['name']} does not select the pods")
    cluster_ports = {p.get("name"): p["port"] for s in cluster for p in s["spec"]["ports"]}
    if cluster_ports.get("grpc") != 50051 or cluster_ports.get("metrics") != 9464:
        problem(f"the ClusterIP Service ports are {cluster_ports}, expected grpc 50051, "
                "metrics 9464")
    if any(p.get("name") == "grpc" and p["port"] != 50051
           for s in headless for p in s["spec"]["ports"]):
        problem("the headless Service's grpc port is not 50051")

    monitors = by_kind(docs, "ServiceMonitor")
    if not monitors or monitors[0].get("apiVersion") != "monitoring.coreos.com/v1":
        problem("no monitoring.coreos.com/v1 ServiceMonitor")
    for monitor in monitors:
        selector = monitor["spec"].get("selector", {}).get("matchLabels")
        scraped = [s for s in services if selects(selector, s["metadata"].get("labels", {}))
                   and any(p.get("name") == "metrics" for p in s["spec"]["ports"])]
        if not scraped:
            problem("the ServiceMonitor selects no Service with a metrics port")
        if [e.get("port") for e in monitor["spec"].get("endpoints", [])] != ["metrics"]:
            problem("the ServiceMonitor does not scrape the port named metrics")
    return problems, flags, container


def check_gpu(docs, flags, container, where):
    problems = []
    limits = container.get("resources", {}).get("limits", {})
    if str(limits.get("nvidia.com/gpu", "0")) in ("0", ""):
        problems.append(f"{where}: no nvidia.com/gpu limit")
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    if not pod.get("nodeSelector") and not pod.get("affinity"):
        problems.append(f"{where}: no node selector or affinity for GPU nodes")
    if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
        problems.append(f"{where}: no toleration for the nvidia.com/gpu taint")
    if flags.get("default_device") != "cuda:0":
        problems.append(f"{where}: --default_device is {flags.get('default_device')}, not cuda:0")
    if "cuda" not in container.get("image", "").split(":")[-1]:
        problems.append(f"{where}: image {container.get('image')} is not a CUDA tag")
    return problems


def check_rank_pod(template, claims, known_flags, where):
    """Problems of one rank's pod template (a PyTorchJob replica's or the Indexed Job's)."""
    problems = []

    def problem(text):
        problems.append(f"{where}: {text}")

    pod = template.get("spec", {})
    containers = pod.get("containers", [])
    if len(containers) != 1:
        problem(f"expected one container, found {len(containers)}")
        return problems, {}
    container = containers[0]
    if not container.get("command", [""])[0].endswith("/verdict-train"):
        problem(f"the container runs {container.get('command')}, not verdict-train")
    flags = {}
    for arg in container.get("args", []):
        if not arg.startswith("--") or "=" not in arg:
            problem(f"argument {arg!r} is not --name=value")
            continue
        name, value = arg[2:].split("=", 1)
        if name not in known_flags:
            problem(f"flag --{name} is not one verdict-train defines")
        flags[name] = value
    for name in ("train", "output", "run_dir"):
        if not flags.get(name, "").startswith(SHARED_DIR + "/"):
            problem(f"--{name} is not on the shared volume ({SHARED_DIR})")
    # Data-parallel ranks run on Gloo, so on CPU (core/train/training_config.cc).
    if flags.get("device") != "cpu":
        problem(f"--device is {flags.get('device')}: data-parallel ranks train on cpu (Gloo)")
    if not container.get("resources", {}).get("requests", {}).get("cpu"):
        problem("a rank requests no CPU")
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        problem("the pod does not run as a non-root user")
    if container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
        problem("the root filesystem is not read-only")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: volumes.get(m["name"], {}) for m in container.get("volumeMounts", [])}
    claim = mounts.get(SHARED_DIR, {}).get("persistentVolumeClaim", {}).get("claimName")
    if claims.get(claim) is None:
        problem(f"{SHARED_DIR} is not on a PersistentVolumeClaim defined here")
    elif "ReadWriteMany" not in claims[claim]["spec"].get("accessModes", []):
        problem(f"claim {claim} is not ReadWriteMany: ranks on other nodes cannot mount it")
    env = {e["name"]: e for e in container.get("env", [])}
    return problems, env


def check_training(docs, known_flags, where):
    problems = []
    claims = {d["metadata"]["name"]: d for d in by_kind(docs, "PersistentVolumeClaim")}
    jobs = by_kind(docs, "PyTorchJob")
    for job in jobs:
        replicas = job["spec"].get("pytorchReplicaSpecs", {})
        if replicas.get("Master", {}).get("replicas") != 1:
            problems.append(f"{where}: the PyTorchJob has no single Master")
        if replicas.get("Worker", {}).get("replicas", 0) < 1:
            problems.append(f"{where}: the PyTorchJob has no Worker")
        for kind, spec in replicas.items():
            found, _ = check_rank_pod(spec.get("template", {}), claims, known_flags,
                                      f"{where} {kind}")
            problems += found
            names = [c.get("name") for c in spec.get("template", {}).get("spec", {})
                     .get("containers", [])]
            if names != ["pytorch"]:
                problems.append(f"{where} {kind}: the operator needs the container named pytorch")
    indexed_jobs = by_kind(docs, "Job")
    for job in indexed_jobs:
        spec = job["spec"]
        template = spec.get("template", {})
        found, env = check_rank_pod(template, claims, known_flags, f"{where} Job")
        problems += found

        def problem(text):
            problems.append(f"{where} Job: {text}")

        if spec.get("completionMode") != "Indexed":
            problem("completionMode is not Indexed: the pods have no rank")
        world = env.get("WORLD_SIZE", {}).get("value")
        if not (world and str(spec.get("completions")) == world == str(spec.get("parallelism"))):
            problem(f"WORLD_SIZE {world} is not both completions ({spec.get('completions')}) "
                    f"and parallelism ({spec.get('parallelism')})")
        rank = env.get("RANK", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if rank != COMPLETION_INDEX:
            problem("RANK does not come from the pod's completion index")
        subdomain = template.get("spec", {}).get("subdomain")
        master = f"{job['metadata']['name']}-0.{subdomain}"
        if env.get("MASTER_ADDR", {}).get("value") != master:
            problem(f"MASTER_ADDR is {env.get('MASTER_ADDR', {}).get('value')}, not {master}")
        port = env.get("MASTER_PORT", {}).get("value")
        services = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == subdomain]
        labels = template.get("metadata", {}).get("labels", {})
        if (not services or services[0]["spec"].get("clusterIP") != "None"
                or not selects(services[0]["spec"].get("selector"), labels)):
            problem(f"no headless Service {subdomain} selecting the ranks")
        elif not any(str(p.get("port")) == port for p in services[0]["spec"].get("ports", [])):
            problem(f"the Service {subdomain} does not carry MASTER_PORT {port}")
    if not jobs and not indexed_jobs:
        problems.append(f"{where}: neither a PyTorchJob nor a Job")
    return problems


def main(argv):
    args = list(argv[1:])
    kubectl = shutil.which("kubectl")
    if "--kubectl" in args:
        at = args.index("--kubectl")
        kubectl = args[at + 1]
        del args[at:at + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    if not kubectl:
        print("kubectl is not installed (scripts/install-deps.sh installs it); skipping")
        return 77
    root = args[0]
    problems = []
    base, error = render(kubectl, os.path.join(root, "base"))
    gpu, gpu_error = render(kubectl, os.path.join(root, "overlays", "gpu"))
    problems += [e for e in (error, gpu_error) if e]
    if base is not None:
        problems += check_render(base, "base")[0]
    if gpu is not None:
        found, flags, container = check_render(gpu, "overlays/gpu")
        problems += found
        if container is not None:
            problems += check_gpu(gpu, flags, container, "overlays/gpu")
    known_flags = train_flags()
    for example in ("pytorchjob", "indexed-job"):
        docs, error = render(kubectl, os.path.join(root, "training", example))
        if error:
            problems.append(error)
        else:
            problems += check_training(docs, known_flags, f"training/{example}")
    for problem in problems:
        print(problem)
    if not problems:
        print(f"base: {len(base)} objects, overlays/gpu: {len(gpu)} objects, training/pytorchjob "
              "and training/indexed-job: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
