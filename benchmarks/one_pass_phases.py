#!/usr/bin/env python3
"""Where the wall time of the one-pass DML command goes (np 1), beside Vowpal Wabbit's driver in the same run.

The command is benchmarks/sparse.py's `--parts sgd` DML command (hashed 2^22, CSR, AdaGrad, `--shuffle off`, one
epoch). Each output line is time-stamped as it arrives and `DML_DATA_STATS=1` makes every rank print its parse time, so
one run splits into: start-up to the start-up line (launch, MPI_Init, the training and test parses, the checksum),
the training steps (the metrics' final `seconds`), evaluation, and the model write. Three DML variants per round:
no test file, with the test file, and `--threads 1` (the one-thread parse: what one parser thread beside the
learner, VW's layout, would have to keep up with). Repetitions are interleaved with VW so the load of a shared
machine hits both alike; compare ratios, not seconds.

    python3 benchmarks/one_pass_phases.py --bin .build/release/dml-train --data /tmp/spfull --repeat 3
(--data: the directory benchmarks/sparse.py --out wrote clicks.svm and clicks.test.svm into.)
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", DML_DATA_STATS="1")


def dml(binary, data, work, extra):
    metrics = work / "m.jsonl"
    if metrics.exists():
        metrics.unlink()
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "1", binary, "--data", data / "clicks.svm",
           "--model", "logistic", "--sparse", "on", "--hash-bits", "22", "--allreduce", "auto", "--epochs", "1",
           "--batch-size", "256", "--optimizer", "adagrad", "--lr", "0.2", "--shuffle", "off",
           "--metrics", metrics, "--output", work / "m.safetensors", *extra]
    t0 = time.perf_counter()
    marks = []
    p = subprocess.Popen([str(c) for c in cmd], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in p.stdout:
        marks.append((time.perf_counter() - t0, line.rstrip()))
    if p.wait() != 0:
        sys.exit("one_pass_phases.py: DML failed:\n" + "\n".join(l for _, l in marks[-20:]))
    whole = time.perf_counter() - t0
    start = next(t for t, l in marks if "global batch" in l)
    done = next(t for t, l in marks if l.startswith("done:"))
    parses = [float(l.split(" in ")[1].split(" s ")[0]) for _, l in marks if l.startswith("dml-data:") and " parsed " in l]
    final = [json.loads(l) for l in open(metrics) if '"event": "final"' in l][-1]
    return dict(whole=whole, start=start, steps=final["seconds"], after_steps=done - start - final["seconds"],
                after_done=whole - done, parse=parses)


def vw(data):
    o = subprocess.run([sys.executable, HERE / "peers" / "sparse_peers.py", "vw", data / "clicks.svm", data / "clicks.test.svm",
                        "--bits", "22"], capture_output=True, text=True, check=True).stdout
    return float(o.strip().splitlines()[-1].split(",")[4])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(HERE.parent / ".build" / "release" / "dml-train"))
    ap.add_argument("--data", default="/tmp/spfull")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    data = Path(a.data)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        variants = [("no test file", []), ("--test-data", ["--test-data", data / "clicks.test.svm"]),
                    ("--test-data --threads 1", ["--test-data", data / "clicks.test.svm", "--threads", "1"])]
        for rep in range(a.repeat):
            v = vw(data)
            print(f"round {rep + 1}: VW whole pass {v:.2f} s; load {os.getloadavg()[0]:.1f}", flush=True)
            for name, extra in variants:
                r = dml(a.bin, data, work, extra)
                print(f"  DML {name}: whole {r['whole']:.2f} s = VW x{v / r['whole']:.2f}; start-up line at {r['start']:.2f} s "
                      f"(parses {', '.join(f'{p:.2f}' for p in r['parse'])} s); steps {r['steps']:.2f} s; "
                      f"evaluation etc. {r['after_steps']:.2f} s; after the done line {r['after_done']:.2f} s", flush=True)


if __name__ == "__main__":
    main()
