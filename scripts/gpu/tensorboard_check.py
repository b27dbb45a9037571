"""Reads a gotune run folder's TensorBoard event file with TensorBoard's own
reader and checks every scalar against the folder's trainer_log.jsonl.

Usage: python3 tensorboard_check.py RUN_DIR   (a run trained with report_to: tensorboard)
Exit status 0 when every logged value is in the event file at its step.
"""
import json
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {
    "loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm",
    "epoch": "train/epoch", "tokens_per_s": "train/tokens_per_second",
    "mem_rss_mb": "train/mem_rss_mb", "mem_peak_mb": "train/mem_peak_mb", "eval_loss": "eval/loss",
}
# trainer_log.jsonl rounds these; the event file keeps float32.
SLACK = {"epoch": 5.1e-5, "tokens_per_s": 0.051, "mem_rss_mb": 0.051, "mem_peak_mb": 0.051}

run = sys.argv[1]
acc = EventAccumulator(run, size_guidance={"scalars": 0})
acc.Reload()
have = {}
for tag in acc.Tags()["scalars"]:
    for ev in acc.Scalars(tag):
        have[(ev.step, tag)] = ev.value
bad = checked = 0
with open(run + "/trainer_log.jsonl") as f:
    for line in f:
        rec = json.loads(line)
        for key, tag in TAGS.items():
            v = rec.get(key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            got = have.get((rec["step"], tag))
            checked += 1
            if got is None or abs(got - v) > 1e-6 * abs(v) + 1e-12 + SLACK.get(key, 0):
                bad += 1
                print(f"step {rec['step']} {tag}: tensorboard {got}, log {v}")
print(f"{checked} scalars checked, {bad} wrong; tags {sorted(acc.Tags()['scalars'])}")
sys.exit(1 if bad or not checked else 0)
