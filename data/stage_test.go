package data

import (
	"testing"
)

// TestStageCannotUse: records whose meaning a text sft/pt run cannot use
// are filtered and counted, not trained: KTO answers labelled undesirable,
// and image/video/audio records (by column or by placeholder).
func TestStageCannotUse(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "kto.json", `[
 {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}], "label": true},
 {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Go away."}], "label": false},
 {"messages": [{"role": "user", "content": "Say bye"}, {"role": "assistant", "content": "Bye!"}], "label": true}]`)
	writeFile(t, dir, "mllm.json", `[
 {"messages": [{"role": "user", "content": "<image>What is this?"}, {"role": "assistant", "content": "A cat."}], "images": ["1.jpg"]},
 {"messages": [{"role": "user", "content": "Describe <image>"}, {"role": "assistant", "content": "A dog."}]},
 {"messages": [{"role": "user", "content": "No picture here"}, {"role": "assistant", "content": "Fine."}], "images": []}]`)
	writeFile(t, dir, "dataset_info.json", `{
 "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
 "mllm": {"file_name": "mllm.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}`)
	info, err := LoadDatasetInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := info.Resolve([]string{"kto", "mllm"})
	if err != nil {
		t.Fatal(err)
	}
	got, rep, err := collect(t, Config{Datasets: specs, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range got {
		if c := ex.Messages[1].Content; c == "Go away." || c == "A cat." || c == "A dog." {
			t.Errorf("%s was kept for sft", c)
		}
	}
	if len(got) != 3 {
		t.Errorf("kept %d examples, want 3", len(got))
	}
	if n := rep.Sources[0].Filtered[ReasonKTORejected]; n != 1 {
		t.Errorf("kto: %d filtered as undesirable, want 1 (%v)", n, rep.Sources[0].Filtered)
	}
	if n := rep.Sources[1].Filtered[ReasonMultimodal]; n != 2 {
		t.Errorf("mllm: %d filtered as multimodal, want 2 (%v)", n, rep.Sources[1].Filtered)
	}
}

// TestWikiDemoTxt: LLaMA-Factory's wiki_demo entry (a .txt file, alpaca
// formatting with prompt column "text") reads one document per line for
// stage pt.
func TestWikiDemoTxt(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "wiki_demo.txt", "Anarchism is a political philosophy.\nAlbedo is the fraction of light reflected.\n")
	writeFile(t, dir, "dataset_info.json", `{"wiki_demo": {"file_name": "wiki_demo.txt", "columns": {"prompt": "text"}}}`)
	specs, err := ResolveDatasets(dir, "wiki_demo")
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, Config{Datasets: specs, Stage: "pt", Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Kind != KindText || got[1].Text != "Albedo is the fraction of light reflected." {
		t.Errorf("got %+v", got)
	}
}

// TestHTMLMediaTagsKept: "<video>" in a text-only dataset is HTML, kept.
func TestHTMLMediaTagsKept(t *testing.T) {
	path := writeFile(t, t.TempDir(), "code.jsonl", `{"instruction":"Embed a clip in HTML","output":"Use <video src=\"a.mp4\" controls></video> or <audio>."}`+"\n")
	got, rep, err := collect(t, Config{Datasets: []Spec{{Name: "code", Path: path}}, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("HTML answer filtered: %v", rep.Sources[0].Filtered)
	}
}

// TestMediaContentParts: image parts inside messages (OpenAI image_url,
// LLaMA-Factory v1 image) make a record multimodal, filtered in text stages
// instead of trained on its text alone.
func TestMediaContentParts(t *testing.T) {
	path := writeFile(t, t.TempDir(), "mm.jsonl",
		`{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}, {"type": "text", "text": "What is it?"}]}, {"role": "assistant", "content": "A cat."}]}`+"\n"+
			`{"messages": [{"role": "user", "content": [{"type": "image", "value": "b.png"}, {"type": "text", "value": "And this?"}]}, {"role": "assistant", "content": [{"type": "text", "value": "A dog."}]}]}`+"\n"+
			`{"messages": [{"role": "user", "content": [{"type": "text", "text": "Plain?"}]}, {"role": "assistant", "content": "Yes."}]}`+"\n")
	got, rep, err := collect(t, Config{Datasets: []Spec{{Name: "mm", Path: path}}, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || rep.Sources[0].Filtered[ReasonMultimodal] != 2 {
		t.Errorf("kept %d, filtered %v; want the text-only record kept and two filtered", len(got), rep.Sources[0].Filtered)
	}
}

// TestFolderTextFiles: a folder of .txt files is a text dataset; a .txt
// beside JSON data (a licence, a note) is not read as training text.
func TestFolderTextFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "texts/a.txt", "one\n")
	writeFile(t, dir, "texts/b.txt", "two\n")
	writeFile(t, dir, "mixed/d.jsonl", `{"text":"x"}`+"\n")
	writeFile(t, dir, "mixed/LICENSE.txt", "Permission is granted.\n")
	for _, tc := range []struct {
		folder string
		want   int
	}{{"texts", 2}, {"mixed", 1}} {
		files, err := DataFiles(dir + "/" + tc.folder)
		if err != nil || len(files) != tc.want {
			t.Errorf("%s: %v, %v; want %d files", tc.folder, files, err, tc.want)
		}
	}
}
