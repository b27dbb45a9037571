// Package ui is gotune's web page, served by `gotune ui` from the binary
// itself (HTML, CSS and JavaScript embedded; no CDN, no build step), and
// the JSON API the page uses. The API calls the same packages as the
// commands: data inspection as `gotune data inspect`, training as a child
// `gotune train` process, chat as `gotune chat`, export as `gotune export`.
// Nothing the page can do is beyond the CLI.
//
// # Security
//
//   - The server listens on 127.0.0.1 unless told otherwise; another address
//     needs a token (--token or GOTUNE_UI_TOKEN). The printed URL carries it
//     as ?token=, which the server exchanges for an HttpOnly, SameSite=Strict
//     cookie; API clients may send "Authorization: Bearer TOKEN" instead.
//     Without a token, requests whose Host is not a loopback name are refused
//     (DNS rebinding).
//   - Every request other than GET and HEAD must carry the header
//     X-Gotune-CSRF with the server's per-process token, which is embedded in
//     the page it serves (<meta name="gotune-csrf">), must be
//     Content-Type: application/json, and, when the browser sends an Origin,
//     that Origin must be this server. Other sites can neither read the token
//     nor send the header without a preflight that is never granted.
//   - Paths are resolved (symbolic links followed) and must lie under a root
//     (--root, repeatable; default the working directory). The bundled model
//     and data may be read but not written. Relative paths are taken from the
//     first root. A path outside is 403.
//
// # Errors
//
// Every failure is a JSON object {"error": "message"} with a 4xx status:
// 400 malformed request (bad JSON, unknown field, missing or invalid value,
// unknown config key), 401 missing token, 403 path outside the roots or CSRF
// check failed, 404 no such folder or API, 409 conflicting state (already
// training, nothing to resume), 415 wrong content type, 422 the request was
// well-formed but the work failed (the message is the command's own error).
// Streaming endpoints that fail after they started end with {"error": ...}
// as their last line.
//
// # Endpoints
//
//	GET  /                      the page
//	GET  /api/session           {"roots": [...], "read_only": [...]}
//	GET  /api/files?dir=D       {"dir", "parent", "entries": [{"name", "path", "dir", "size", "kind"}]}
//	                            folders and data/config files of D (default: the first root);
//	                            kind is model, adapter, run, dataset, dataset_info or config
//	GET  /api/models            [{"name", "path", "kind": "model"|"adapter", "base"}] under the roots
//	GET  /api/datasets          [{"name", "dataset", "dataset_dir", "path", "kind": "info"|"file"}]:
//	                            dataset_info.json entries and loose data files; "dataset" and
//	                            "dataset_dir" are the values for the config keys of the same name
//	POST /api/config            {"settings": {KEY: VALUE}} → {"yaml", "warnings"}: the settings as
//	                            the YAML `gotune train` takes, checked as it checks them
//	POST /api/inspect           {"settings": {...}, "samples": N} → the report of
//	                            `gotune data inspect --json`: per-source counts, what each filter
//	                            removed, length histogram, rendered samples as segments with
//	                            "trained": true on the trained span
//	GET  /api/records?path=P&offset=N&limit=M
//	                            {"path", "total", "offset", "records": [raw JSON objects]} of a .json
//	                            or .jsonl file (up to 64 MB; limit 1..500, default 50), for curation
//	POST /api/records/save      {"dir", "name", "file_name", "records": [objects]} → {"path",
//	                            "dataset", "dataset_dir", "format", "records", "entry"}: writes
//	                            DIR/FILE_NAME (default NAME.jsonl) and adds or updates the entry NAME
//	                            in DIR/dataset_info.json; every record must be one format
//	POST /api/plan              {"model", "dataset_file", "batch", "seq", "lora_rank"} → the plan
//	                            of `gotune plan --json` for this machine
//	GET  /api/runs              [RunStatus]: run folders under the roots (they hold
//	                            trainer_log.jsonl or train.yaml)
//	GET  /api/run?dir=D         RunStatus of D, with "output" (the tail of train_output.log)
//	GET  /api/run/log?dir=D&after=N
//	                            {"count", "records"}: trainer_log.jsonl lines after the first N
//	GET  /api/run/yaml?dir=D[&download=1]
//	                            the run's train.yaml (as an attachment with download)
//	POST /api/run/start         {"settings": {... "output_dir": D}} → RunStatus: writes D/train.yaml
//	                            and starts `gotune train D/train.yaml` in the background
//	POST /api/run/stop          {"dir": D} → RunStatus: SIGTERM, then SIGKILL after 5 s
//	POST /api/run/resume        {"dir": D} → RunStatus: `gotune train D/train.yaml
//	                            resume_from_checkpoint=true`
//	GET  /api/chart.svg?metric=M&dir=D[&dir=D2...]
//	                            SVG chart of metric M (loss, eval_loss, lr, grad_norm, tokens_per_s,
//	                            mem_rss_mb, mem_peak_mb) for up to 8 runs overlaid
//	POST /api/eval              {"settings": {"model_name_or_path", "template", "cutoff_len", ...},
//	                            "datasets": [{"dataset", "dataset_dir"}], "adapter"} →
//	                            [{"dataset", "base": [EvalResult], "adapter": [EvalResult]}]: what
//	                            `gotune eval --adapter` reports (loss, perplexity per dataset)
//	POST /api/chat              {"model", "adapter", "messages": [{"role", "content"}],
//	                            "max_new_tokens", "temperature", "seed"} → NDJSON stream:
//	                            {"text"} lines, then {"done": true, "tokens", "finish_reason",
//	                            "tokens_per_s"}
//	POST /api/export            {"model", "adapter", "out", "format": "hf"|"peft"|"gguf",
//	                            "gguf_type", "modelfile", "force"} → NDJSON stream: {"written",
//	                            "total"} progress lines, then {"result": {"out", "files", "merged"}}
//
// RunStatus is {"dir", "name", "state": new|running|stopped|finished|failed,
// "step", "total_steps", "progress" (0..1), "loss", "eval_loss", "eta_s",
// "elapsed_s", "error", "has_config", "resumable", "adapter"}.
//
// # Training jobs
//
// A run is a child process of the same binary, in a process group of its
// own, reniced to 10 (every thread, re-applied each second) so the server
// and the page stay responsive while training keeps all cores busy. It
// outlives the page and the server: its PID is kept in the run folder, and a
// later `gotune ui` shows it as running and can stop it. Progress, ETA and
// charts come from the run folder's trainer_log.jsonl, so two pages watching
// one run see the same data, as does the CLI.
package ui
