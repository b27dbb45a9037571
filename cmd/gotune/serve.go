package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gotune/assets"
	"gotune/compute"
	"gotune/infer"
	"gotune/model"
	"gotune/serve"
)

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runServe(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signalContext()
	defer stop()
	if wantsHelp(args) {
		// Asked-for help goes to stdout; serveMain writes only to its log.
		stderr = stdout
	}
	return serveMain(ctx, args, stderr, nil)
}

// adapterFlags collects repeated --adapter NAME=DIR values.
type adapterFlags []namedDir

type namedDir struct{ name, dir string }

func (a *adapterFlags) String() string {
	var parts []string
	for _, d := range *a {
		parts = append(parts, d.name+"="+d.dir)
	}
	return strings.Join(parts, ",")
}

func (a *adapterFlags) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	if !ok { // a bare folder is served under its base name
		name, dir = serve.ModelName(v), v
	}
	if name == "" || dir == "" {
		return fmt.Errorf("want NAME=DIR or DIR, got %q", v)
	}
	*a = append(*a, namedDir{name, dir})
	return nil
}

// serveMain loads the models, listens and serves until ctx ends; ready,
// when set, gets the bound address.
func serveMain(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fs := newFlagSet("serve", "usage: gotune serve [MODEL] [flags]\n\n"+
		"Serve an OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions)\n"+
		"for a model folder (default: the bundled "+assets.DefaultModel+") and its adapters.\n"+
		"MODEL and flags may come in any order.", args, stderr, stderr)
	modelDir := fs.String("model", "", "model folder (or give it as the first argument)")
	var adapters adapterFlags
	fs.Var(&adapters, "adapter", "PEFT adapter served as model NAME: NAME=DIR, repeatable (a bare DIR uses its folder name)")
	host := fs.String("host", "127.0.0.1", "address to bind; anything but loopback exposes the server")
	port := fs.Int("port", 8000, "port (0: any free port)")
	apiKey := fs.String("api-key", os.Getenv("GOTUNE_API_KEY"), "require 'Authorization: Bearer KEY' (default $GOTUNE_API_KEY)")
	maxConc := fs.Int("max-concurrency", 1, "generations running at once")
	queue := fs.Int("queue", 16, "requests waiting for a turn before answering 429")
	replicas := fs.Int("replicas", 1, "engines loaded per model name; each runs one generation at a time (they share the base weights)")
	maxTokens := fs.Int("max-tokens", 2048, "largest max_tokens a request may ask for")
	maxBody := fs.Int64("max-body-bytes", 4<<20, "largest request body")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long to let requests finish on SIGINT/SIGTERM")
	device := fs.String("device", "auto", "cpu, cuda (bf16 on an NVIDIA GPU; the base weights are held there once, each model adds its adapter) or auto")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelDir, err = positionalModel(*modelDir, pos); err != nil {
		return err
	}
	if *replicas < 1 || *maxConc < 1 || *queue < 1 {
		return fmt.Errorf("--replicas, --max-concurrency and --queue must be at least 1")
	}
	dir, err := modelPath(*modelDir)
	if err != nil {
		return err
	}
	logger := log.New(stderr, "gotune serve: ", log.LstdFlags)

	// One engine per replica and adapter, all sharing one copy of the base
	// weights (an adapter attaches to its engine's own module structs).
	baseEngine, err := infer.Load(dir, "")
	if err != nil {
		return err
	}
	dev, release, err := trainDevice(*device, stderr)
	if err != nil {
		return err
	}
	defer release()
	devLock := new(sync.Mutex) // one generation at a time on the device, across models and replicas
	var shared *model.SharedWeights
	_, onHost := dev.Backend.(compute.HostBackend)
	if !onHost {
		// The base weights go to the device once for every model and
		// replica; each adds only its adapter.
		shared = model.NewSharedWeights(dev.Backend)
	}
	load := func(name, adapterDir string) (serve.Model, error) {
		var engines []*infer.Engine
		for range *replicas {
			e, err := baseEngine.WithAdapter(adapterDir)
			if err != nil {
				return serve.Model{}, err
			}
			// On the CPU every engine gets a backend of its own, so
			// replicas generate side by side as they always did; the
			// frozen weights are read where the host model holds them,
			// once for all.
			onCPU := func() error {
				be, _, err := openBackend("cpu")
				if err != nil {
					return err
				}
				return e.UseDevice(be, false, nil, nil)
			}
			if onHost {
				if err := onCPU(); err != nil {
					return serve.Model{}, fmt.Errorf("--device %s: %w", *device, err)
				}
			} else if err := e.UseDevice(dev.Backend, true, devLock, shared); err != nil {
				if dev.Fallback == nil {
					return serve.Model{}, fmt.Errorf("--device %s: %w", *device, err)
				}
				logger.Printf("note: %s is served from the CPU: %v", name, err)
				if err := onCPU(); err != nil {
					return serve.Model{}, fmt.Errorf("%s on the CPU: %w", name, err)
				}
			}
			engines = append(engines, e)
		}
		return serve.FromEngines(name, engines...), nil
	}
	base := serve.ModelName(dir)
	m, err := load(base, "")
	if err != nil {
		return err
	}
	models := []serve.Model{m}
	seen := map[string]bool{base: true}
	for _, a := range adapters {
		if seen[a.name] {
			return fmt.Errorf("--adapter %s=%s: the name %q is already served", a.name, a.dir, a.name)
		}
		seen[a.name] = true
		m, err := load(a.name, a.dir)
		if err != nil {
			return fmt.Errorf("--adapter %s: %w", a.name, err)
		}
		models = append(models, m)
	}
	srv, err := serve.New(serve.Config{Models: models, APIKey: *apiKey, MaxConcurrency: *maxConc, QueueSize: *queue,
		MaxTokens: *maxTokens, MaxBodyBytes: *maxBody, ShutdownTimeout: *shutdown, Logf: logger.Printf})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	if ip := net.ParseIP(*host); (ip == nil || !ip.IsLoopback()) && *host != "localhost" && *apiKey == "" {
		logger.Printf("warning: listening on %s without --api-key: anyone who can reach it can use it", *host)
	}
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name
	}
	logger.Printf("serving %s on http://%s/v1 (max concurrency %d, queue %d)", strings.Join(names, ", "), ln.Addr(), *maxConc, *queue)
	if ready != nil {
		ready(ln.Addr().String())
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Printf("stopped")
	return nil
}
