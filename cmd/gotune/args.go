package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"gotune/config"
)

// Every subcommand accepts its positional arguments and flags in any order
// (`gotune generate MODEL --prompt hi` as well as `gotune generate --prompt
// hi MODEL`), and refuses what it cannot place with an error: an argument
// that is silently dropped runs something other than what the user asked for.

// wantsHelp reports whether args ask for help before a "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// newFlagSet returns a flag set whose usage is head followed by every flag
// with its documentation. Help that was asked for goes to stdout (and the
// command exits 0, see run); usage printed because of a mistake goes to
// stderr.
func newFlagSet(name, head string, args []string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimRight(head, "\n"))
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments (gotune chat MODEL --adapter DIR) and returns the
// positionals in order. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// noPositionals refuses positional arguments of a command that takes none.
func noPositionals(pos []string) error {
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q: this command takes flags only (-h lists them)", pos[0])
	}
	return nil
}

// positionalModel merges --model with an optional MODEL argument.
func positionalModel(flagValue string, pos []string) (string, error) {
	switch {
	case len(pos) > 1:
		return "", fmt.Errorf("unexpected arguments %q: give one model folder", pos[1:])
	case len(pos) == 1 && flagValue != "" && flagValue != pos[0]:
		return "", fmt.Errorf("model given twice: %q and --model %q", pos[0], flagValue)
	case len(pos) == 1:
		return pos[0], nil
	}
	return flagValue, nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// configArgs separates the arguments of a command that reads a training
// config (train, data, eval) into the config file and the --key value
// overrides, in any order. A value is taken for --key exactly as
// config.ApplyFlags takes it, so `--learning_rate 1e-4 my.yaml` and `my.yaml
// --learning_rate 1e-4` mean the same; a second positional is an error.
func configArgs(args []string) (path string, overrides []string, err error) {
	positional := func(a string) error {
		if path != "" {
			return fmt.Errorf("unexpected argument %q: the config file is already %q (overrides are --key value)", a, path)
		}
		path = a
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			for _, p := range args[i+1:] {
				if err := positional(p); err != nil {
					return "", nil, err
				}
			}
			return path, overrides, nil
		case strings.HasPrefix(a, "--"):
			overrides = append(overrides, a)
			key, _, hasVal := strings.Cut(a[2:], "=")
			if hasVal || i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				continue
			}
			if !isBoolKey(key) || isBoolValue(key, args[i+1]) {
				i++
				overrides = append(overrides, args[i])
			}
		case strings.HasPrefix(a, "-") || strings.Contains(a, "="):
			// -x and key=value: config.ApplyFlags accepts or refuses them.
			overrides = append(overrides, a)
		default:
			if err := positional(a); err != nil {
				return "", nil, err
			}
		}
	}
	return path, overrides, nil
}

// isBoolKey reports whether a config key is a boolean, which takes a value
// only when the next argument is a boolean word. It asks the config itself
// rather than keeping a second list of types.
func isBoolKey(key string) bool {
	key = strings.ReplaceAll(key, "-", "_")
	c := config.Default()
	return c.Set(key, "true") == nil && c.Set(key, "false") == nil && c.Set(key, "not-a-boolean") != nil
}

func isBoolValue(key, v string) bool {
	return config.Default().Set(strings.ReplaceAll(key, "-", "_"), v) == nil
}

// takeFlags removes a command's own flags (besides the config keys) from
// args, wherever they stand. bools are flags without a value; values take
// one (as --name value or --name=value).
func takeFlags(args []string, bools map[string]*bool, values map[string]*string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), nil
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		if p, ok := bools[name]; ok {
			*p = true
			if hasVal {
				b, err := parseBoolWord(val)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", a, err)
				}
				*p = b
			}
			continue
		}
		if p, ok := values[name]; ok {
			if !hasVal {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("--%s needs a value", name)
				}
				i++
				val = args[i]
			}
			*p = val
			continue
		}
		rest = append(rest, a)
	}
	return rest, nil
}

func parseBoolWord(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

// version is the module version and VCS revision the binary was built from.
func version() string {
	v := "(devel)"
	rev, dirty, goVer := "", false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVer = bi.GoVersion
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out := "gotune " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " " + rev
		if dirty {
			out += "+dirty"
		}
	}
	if goVer != "" {
		out += " " + goVer
	}
	return out
}
