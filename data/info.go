package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Spec describes one dataset: where its files are and how to read them.
// Its fields mirror an entry of LLaMA-Factory's dataset_info.json.
type Spec struct {
	Name       string  `json:"name"`
	Path       string  `json:"path"`                 // a file or a folder
	Formatting string  `json:"formatting,omitempty"` // FormatAuto detects per file
	Ranking    bool    `json:"ranking,omitempty"`
	Columns    Columns `json:"columns,omitempty"`
	Tags       Tags    `json:"tags,omitempty"`
	NumSamples int     `json:"num_samples,omitempty"` // keep at most this many (0: all)
}

// infoEntry is one dataset_info.json entry as LLaMA-Factory writes it.
type infoEntry struct {
	FileName   string         `json:"file_name"`
	Formatting string         `json:"formatting"`
	Ranking    bool           `json:"ranking"`
	Columns    map[string]any `json:"columns"`
	Tags       Tags           `json:"tags"`
	NumSamples int            `json:"num_samples"`
	HFHubURL   string         `json:"hf_hub_url"`
	MSHubURL   string         `json:"ms_hub_url"`
	OMHubURL   string         `json:"om_hub_url"`
	ScriptURL  string         `json:"script_url"`
	Split      string         `json:"split"`
	Subset     string         `json:"subset"`
	Folder     string         `json:"folder"`
}

// DatasetInfo is a parsed dataset_info.json.
type DatasetInfo struct {
	Dir     string // dataset_dir the file names are relative to
	entries map[string]infoEntry
}

// LoadDatasetInfo reads dir/dataset_info.json. A missing file gives an
// empty DatasetInfo, since names may also be plain paths.
func LoadDatasetInfo(dir string) (*DatasetInfo, error) {
	info := &DatasetInfo{Dir: dir, entries: map[string]infoEntry{}}
	path := filepath.Join(dir, "dataset_info.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return info, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &info.entries); err != nil {
		return nil, fmt.Errorf("%s: expected an object of dataset entries: %w", path, err)
	}
	return info, nil
}

// Names lists the datasets declared in dataset_info.json.
func (d *DatasetInfo) Names() []string {
	names := make([]string, 0, len(d.entries))
	for n := range d.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ResolveDatasets resolves LLaMA-Factory's `dataset` value (names separated
// by commas) against dataset_dir.
func ResolveDatasets(datasetDir, names string) ([]Spec, error) {
	info, err := LoadDatasetInfo(datasetDir)
	if err != nil {
		return nil, err
	}
	return info.Resolve(strings.Split(names, ","))
}

// Resolve turns dataset names (LLaMA-Factory's comma-separated `dataset`
// key, already split) into Specs. A name not in dataset_info.json is taken
// as a path relative to dataset_dir (or absolute).
func (d *DatasetInfo) Resolve(names []string) ([]Spec, error) {
	specs := make([]Spec, 0, len(names))
	for _, name := range names {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		s, err := d.resolve(name)
		if err != nil {
			return nil, err
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("no dataset given")
	}
	return specs, nil
}

func (d *DatasetInfo) resolve(name string) (Spec, error) {
	e, ok := d.entries[name]
	if !ok {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(d.Dir, p)
		}
		if _, err := os.Stat(p); err != nil {
			return Spec{}, fmt.Errorf("dataset %q: not in %s and not a file or folder (known: %s)", name, filepath.Join(d.Dir, "dataset_info.json"), strings.Join(d.Names(), ", "))
		}
		return Spec{Name: name, Path: p}, nil
	}
	where := fmt.Sprintf("%s: dataset %q", filepath.Join(d.Dir, "dataset_info.json"), name)
	if e.FileName == "" {
		if e.HFHubURL != "" || e.MSHubURL != "" || e.OMHubURL != "" || e.ScriptURL != "" {
			return Spec{}, fmt.Errorf("%s: remote datasets are not downloaded by gotune; download it into %s and set \"file_name\"", where, d.Dir)
		}
		return Spec{}, fmt.Errorf("%s: missing \"file_name\"", where)
	}
	s := Spec{Name: name, Path: e.FileName, Ranking: e.Ranking, Tags: e.Tags, NumSamples: e.NumSamples}
	if !filepath.IsAbs(s.Path) {
		s.Path = filepath.Join(d.Dir, s.Path)
	}
	switch f := strings.ToLower(e.Formatting); f {
	case "":
		s.Formatting = FormatAlpaca // LLaMA-Factory's default
	case FormatAlpaca, FormatShareGPT, FormatOpenAI, FormatText, FormatPreference:
		s.Formatting = f
	default:
		return Spec{}, fmt.Errorf("%s: unknown formatting %q (expected alpaca or sharegpt)", where, e.Formatting)
	}
	// LLaMA-Factory's OpenAI layout is "sharegpt" with role/content tags.
	if s.Formatting == FormatShareGPT && e.Tags.RoleTag == "role" {
		s.Tags = s.Tags.withDefaults(FormatOpenAI)
	}
	for k, v := range e.Columns {
		col, ok := v.(string)
		if !ok {
			return Spec{}, fmt.Errorf("%s: columns.%s: expected a column name string", where, k)
		}
		switch k {
		case "prompt":
			s.Columns.Prompt = col
		case "query":
			s.Columns.Query = col
		case "response":
			s.Columns.Response = col
		case "history":
			s.Columns.History = col
		case "messages":
			s.Columns.Messages = col
		case "system":
			s.Columns.System = col
		case "tools":
			s.Columns.Tools = col
		case "chosen":
			s.Columns.Chosen = col
		case "rejected":
			s.Columns.Rejected = col
		case "text":
			s.Columns.Text = col
		case "kto_tag":
			s.Columns.KTOTag = col
		case "images":
			s.Columns.Images = col
		case "videos":
			s.Columns.Videos = col
		case "audios":
			s.Columns.Audios = col
		default:
			return Spec{}, fmt.Errorf("%s: unknown column key %q", where, k)
		}
	}
	if _, err := os.Stat(s.Path); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}
