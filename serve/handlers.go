package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gotune/chat"
	"gotune/constrain"
	"gotune/infer"
	"gotune/jsondepth"
)

// readJSON decodes a size-limited body into v, turning each failure into
// the 4xx it deserves.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	// Slow clients get a deadline for sending the body; generating and
	// streaming the reply afterwards may take as long as it needs.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		// The rest of the body is not worth reading: without this, net/http
		// drains it before replying (and, were the deadline cleared, for
		// as long as a client trickles bytes), holding the connection.
		// The deadline stays, and the connection closes after the reply.
		w.Header().Set("Connection", "close")
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return newError(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "",
				"request body is larger than %d bytes", tooBig.Limit)
		}
		return newError(http.StatusBadRequest, "invalid_request_error", "", "", "reading the request body: %v", err)
	}
	if deadline {
		// Generating and streaming the reply may take as long as it needs.
		rc.SetReadDeadline(time.Time{})
	}
	// Bounded before decoding: fields such as tool arguments are decoded
	// again, recursively, further on.
	if err := jsondepth.Check(body, jsondepth.Default); err != nil {
		return newError(http.StatusBadRequest, "invalid_request_error", "invalid_json", "",
			"the request body is not acceptable: %v", err)
	}
	if err := decodeStrict(body, v); err != nil {
		if field, ok := unknownField(err); ok {
			return invalid(field, "unknown field %q: gotune does not support it, and ignoring it could give a reply other than the one asked for", field)
		}
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			field := strings.TrimPrefix(typeErr.Field, "samplingFields.")
			return invalid(field, "field %q: expected %s, got a JSON %s", field, jsonKindOf(typeErr.Type), typeErr.Value)
		case errors.As(err, &syntaxErr):
			return newError(http.StatusBadRequest, "invalid_request_error", "invalid_json", "",
				"the request body is not valid JSON (at byte %d): %v", syntaxErr.Offset, err)
		}
		return newError(http.StatusBadRequest, "invalid_request_error", "invalid_json", "",
			"the request body is not valid JSON: %v", err)
	}
	return nil
}

// decodeStrict is json.Unmarshal that refuses fields v does not have.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		// What json.Unmarshal says about data after the value.
		return json.Unmarshal(body, new(any))
	}
	return nil
}

// unknownField reads the field name out of encoding/json's error for a
// field the target does not have.
func unknownField(err error) (string, bool) {
	rest, ok := strings.CutPrefix(err.Error(), "json: unknown field ")
	if !ok {
		return "", false
	}
	name, uerr := strconv.Unquote(rest)
	if uerr != nil {
		return rest, true
	}
	return name, true
}

// jsonKindOf names the JSON value a Go type decodes from.
func jsonKindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// genOptions are a request's validated generation settings.
type genOptions struct {
	sample       infer.SampleOptions
	maxTokens    int // 0: as many as the context and the limit allow
	stops        []string
	stream       bool
	includeUsage bool
	raw          bool // plain-text completion: infer.Request.Raw
	// grammar, when set, constrains the output (response_format,
	// tool_choice required or named): infer.Request.Grammar.
	grammar *constrain.Grammar
}

func (s *Server) sampling(f *samplingFields, p *pool) (genOptions, error) {
	o := genOptions{sample: p.Defaults, stream: f.Stream}
	if f.StreamOptions != nil {
		if !f.Stream {
			return o, invalid("stream_options", "stream_options is only allowed with stream=true")
		}
		o.includeUsage = f.StreamOptions.IncludeUsage
	}
	if t := f.Temperature; t != nil {
		if math.IsNaN(*t) || *t < 0 || *t > 2 {
			return o, invalid("temperature", "temperature must be between 0 and 2, got %v", *t)
		}
		o.sample.Temperature = *t
	}
	if t := f.TopP; t != nil {
		if math.IsNaN(*t) || *t <= 0 || *t > 1 {
			return o, invalid("top_p", "top_p must be in (0, 1], got %v", *t)
		}
		o.sample.TopP = *t
	}
	if k := f.TopK; k != nil {
		if *k < -1 {
			return o, invalid("top_k", "top_k must be -1, 0 (no limit) or positive, got %d", *k)
		}
		o.sample.TopK = max(*k, 0)
	}
	if rp := f.RepetitionPenalty; rp != nil {
		if math.IsNaN(*rp) || *rp <= 0 {
			return o, invalid("repetition_penalty", "repetition_penalty must be positive, got %v", *rp)
		}
		o.sample.RepetitionPenalty = *rp
	}
	if f.Seed != nil {
		o.sample.Seed = uint64(*f.Seed)
	} else {
		o.sample.Seed = mrand.Uint64()
	}
	if p := f.FrequencyPenalty; p != nil && *p != 0 {
		return o, invalid("frequency_penalty", "frequency_penalty is not supported (only 0); repetition_penalty is")
	}
	if p := f.PresencePenalty; p != nil && *p != 0 {
		return o, invalid("presence_penalty", "presence_penalty is not supported (only 0); repetition_penalty is")
	}
	if len(f.LogitBias) > 0 {
		return o, invalid("logit_bias", "logit_bias is not supported")
	}
	switch string(f.Logprobs) {
	case "", "null", "false", "0":
	default:
		return o, invalid("logprobs", "logprobs are not supported")
	}
	if f.N != nil && *f.N != 1 {
		return o, invalid("n", "only n=1 is supported, got %d", *f.N)
	}
	limit, param := f.MaxTokens, "max_tokens"
	if f.MaxCompletionTokens != nil {
		limit, param = f.MaxCompletionTokens, "max_completion_tokens"
	}
	if limit != nil {
		if *limit < 1 || *limit > s.cfg.MaxTokens {
			return o, invalid(param, "%s must be between 1 and %d, got %d", param, s.cfg.MaxTokens, *limit)
		}
		o.maxTokens = *limit
	}
	if len(f.Stop) > 0 && string(f.Stop) != "null" {
		var one string
		if json.Unmarshal(f.Stop, &one) == nil {
			o.stops = []string{one}
		} else if err := json.Unmarshal(f.Stop, &o.stops); err != nil {
			return o, invalid("stop", "stop must be a string or an array of strings")
		}
		if len(o.stops) > 16 {
			return o, invalid("stop", "at most 16 stop strings, got %d", len(o.stops))
		}
		for _, st := range o.stops {
			if st == "" {
				return o, invalid("stop", "stop strings must not be empty")
			}
		}
	}
	return o, nil
}

// budget returns the completion token limit for a prompt, or a 400 when
// the prompt leaves no room in the context.
func (s *Server) budget(p *pool, o genOptions, promptTokens int) (int, error) {
	n := o.maxTokens
	if n == 0 {
		n = s.cfg.MaxTokens
	}
	if c := p.ContextLength; c > 0 {
		room := c - promptTokens
		if room < 1 || (o.maxTokens > 0 && o.maxTokens > room) {
			return 0, newError(http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", "messages",
				"this model's context is %d tokens; the prompt has %d and %d more were requested", c, promptTokens, o.maxTokens)
		}
		n = min(n, room)
	}
	return n, nil
}

// run generates for one request: it cuts the text at stop strings, passes
// the text to onText as it becomes final, and reports why it ended.
func (s *Server) run(ctx context.Context, e Engine, prompt string, maxTokens int, o genOptions, onText func(string)) (infer.Result, string, error) {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := stopper{stops: o.stops}
	start := time.Now()
	res, err := e.GenerateContext(gctx, infer.Request{Prompt: prompt, MaxTokens: maxTokens, Sample: o.sample, Raw: o.raw,
		Grammar: o.grammar,
		OnText: func(piece string) {
			text, hit := st.push(piece)
			if text != "" {
				onText(text)
			}
			if hit {
				cancel()
			}
		}})
	finish := res.FinishReason
	switch {
	case st.hit && ctx.Err() == nil:
		finish, err = "stop", nil
	case err != nil:
		return res, "", err
	default:
		if rest := st.flush(); rest != "" {
			onText(rest)
		}
	}
	el := time.Since(start).Seconds()
	s.logf("generated %d tokens (prompt %d) in %.2fs, %.1f tokens/s, finish %s",
		len(res.Tokens), res.PromptTokens, el, float64(len(res.Tokens))/max(el, 1e-9), finish)
	return res, finish, nil
}

// sse writes server-sent events; after a failed write it stays silent and
// cancels the generation feeding it.
type sse struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	cancel context.CancelFunc
	err    error
}

func startSSE(w http.ResponseWriter, cancel context.CancelFunc) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w, rc: http.NewResponseController(w), cancel: cancel}
}

func (s *sse) send(v any) {
	if s.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		_, err = fmt.Fprintf(s.w, "data: %s\n\n", b)
	}
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		s.err = err
		s.cancel()
	}
}

func (s *sse) done() {
	if s.err == nil {
		fmt.Fprint(s.w, "data: [DONE]\n\n")
		s.rc.Flush()
	}
}

// fail reports an error that happened after the stream started.
func (s *sse) fail(err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = newError(http.StatusInternalServerError, "server_error", "", "", "%v", err)
	}
	s.send(map[string]*apiError{"error": e})
	s.done()
}

func newID(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// chatInput is a validated chat request.
type chatInput struct {
	msgs    []chat.Message
	tools   []any
	extra   map[string]any
	toolsOn bool // parse tool calls from the reply
	// forceTool: tool_choice "required" or a named function; the reply is
	// constrained to a call of one of tools.
	forceTool bool
}

var allowedRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

// reserved template variables a request may not override.
var reservedVars = map[string]bool{"messages": true, "tools": true, "documents": true,
	"add_generation_prompt": true, "bos_token": true, "eos_token": true}

func parseChatInput(req *chatRequest) (chatInput, error) {
	var in chatInput
	if len(req.Messages) == 0 || string(req.Messages) == "null" {
		return in, invalid("messages", "messages is required: a non-empty array of {role, content}")
	}
	msgs, err := chat.ParseMessages(req.Messages)
	if err != nil {
		return in, invalid("messages", "%v", err)
	}
	if len(msgs) == 0 {
		return in, invalid("messages", "messages must not be empty")
	}
	for i, m := range msgs {
		if msgs[i], err = normalizeMessage(m); err != nil {
			return in, invalid(fmt.Sprintf("messages[%d]", i), "messages[%d]: %v", i, err)
		}
	}
	in.msgs = msgs
	if len(req.Tools) > 0 && string(req.Tools) != "null" {
		if in.tools, err = chat.ParseTools(req.Tools); err != nil {
			return in, invalid("tools", "%v", err)
		}
		for i, t := range in.tools {
			if _, err := toolName(t); err != nil {
				return in, invalid(fmt.Sprintf("tools[%d]", i), "tools[%d]: %v", i, err)
			}
		}
	}
	if err := in.applyToolChoice(req.ToolChoice); err != nil {
		return in, err
	}
	if len(in.tools) == 0 {
		in.tools = nil
	}
	in.toolsOn = len(in.tools) > 0
	for k, v := range req.ChatTemplateKwargs {
		if reservedVars[k] {
			return in, invalid("chat_template_kwargs", "chat_template_kwargs may not set %q", k)
		}
		if in.extra == nil {
			in.extra = map[string]any{}
		}
		in.extra[k] = v
	}
	return in, nil
}

// checkTemplateKwargs refuses a chat_template_kwargs key that the template
// source never names: the template could not read it, and a misspelled
// enable_thinking would change nothing without a word.
func checkTemplateKwargs(kwargs map[string]json.RawMessage, source string) error {
	if source == "" {
		return nil
	}
	keys := make([]string, 0, len(kwargs))
	for k := range kwargs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !chat.NamesIdentifier(source, k) {
			return invalid("chat_template_kwargs", "chat_template_kwargs: the model's chat template never reads %q, so it would be ignored", k)
		}
	}
	return nil
}

// normalizeMessage checks the role and reshapes OpenAI fields the way chat
// templates expect them.
func normalizeMessage(m chat.Message) (chat.Message, error) {
	role := m.Role()
	if !allowedRoles[role] {
		return m, fmt.Errorf("role %q is not one of system, developer, user, assistant, tool", role)
	}
	if err := checkKeys(m.Fields, "", messageKeys); err != nil {
		return m, err
	}
	if role == "developer" { // OpenAI's newer name; templates know "system"
		m = m.With("role", "system")
	}
	// Templates index content as a string: join text parts.
	if parts, ok := m.Content().([]any); ok {
		var b strings.Builder
		for j, p := range parts {
			o, _ := p.(chat.Object)
			typ, _ := o.Get("type")
			text, ok := o.Get("text")
			s, isStr := text.(string)
			if typ != "text" || !ok || !isStr {
				return m, fmt.Errorf("content[%d]: only {\"type\": \"text\", \"text\": ...} parts are supported", j)
			}
			b.WriteString(s)
		}
		m = m.With("content", b.String())
	}
	// content null (a turn that only calls tools) or left out means no
	// text: "" renders with every template (see chat.FillNullContent)
	m = m.FillNullContent()
	// Templates print tool-call arguments with tojson and expect an object;
	// OpenAI sends a JSON string.
	if tc, ok := m.Fields.Get("tool_calls"); ok && tc != nil {
		calls, ok := tc.([]any)
		if !ok {
			return m, fmt.Errorf("field \"tool_calls\" must be an array")
		}
		out := make([]any, len(calls))
		for j, c := range calls {
			o, ok := c.(chat.Object)
			if !ok {
				return m, fmt.Errorf("tool_calls[%d]: expected an object", j)
			}
			if err := checkKeys(o, fmt.Sprintf("tool_calls[%d].", j), toolCallKeys); err != nil {
				return m, err
			}
			fn, _ := o.Get("function")
			fo, ok := fn.(chat.Object)
			if !ok {
				return m, fmt.Errorf("tool_calls[%d]: field \"function\" must be an object", j)
			}
			if err := checkKeys(fo, fmt.Sprintf("tool_calls[%d].function.", j), toolCallFunctionKeys); err != nil {
				return m, err
			}
			if name, _ := fo.Get("name"); name == nil {
				return m, fmt.Errorf("tool_calls[%d].function: field \"name\" is missing", j)
			}
			if args, ok := fo.Get("arguments"); ok {
				if s, isStr := args.(string); isStr {
					v, err := chat.DecodeJSON([]byte(s))
					if err != nil {
						return m, fmt.Errorf("tool_calls[%d].function.arguments: not a JSON text: %v", j, err)
					}
					fo = fo.With("arguments", v)
				}
			}
			out[j] = o.With("function", fo)
		}
		m = m.With("tool_calls", out)
	}
	return m, nil
}

// The keys a message, a tool call in a message and a tool definition may
// have: OpenAI's (and vLLM's reasoning_content, which chat templates read).
// true: used; false: accepted only when null or empty, as clients send them
// back with an assistant message (refusal, annotations, audio,
// function_call) but gotune never produces them.
var (
	messageKeys = map[string]bool{"role": true, "content": true, "name": true, "tool_calls": true,
		"tool_call_id": true, "reasoning_content": true,
		"refusal": false, "annotations": false, "audio": false, "function_call": false}
	// index: a call assembled from stream deltas keeps it; its position says the same.
	toolCallKeys         = map[string]bool{"id": true, "type": true, "function": true, "index": true}
	toolCallFunctionKeys = map[string]bool{"name": true, "arguments": true}
	toolKeys             = map[string]bool{"type": true, "function": true}
	toolFunctionKeys     = map[string]bool{"name": true, "description": true, "parameters": true, "strict": true}
)

// checkKeys refuses a key of o that known does not list, and a value
// other than null or empty for a key listed as false, naming it (after
// prefix): an unknown key passed on to the chat template would be ignored
// without a word.
func checkKeys(o chat.Object, prefix string, known map[string]bool) error {
	for _, f := range o {
		used, ok := known[f.Key]
		if !ok {
			return fmt.Errorf("unknown field \"%s%s\"", prefix, f.Key)
		}
		if !used && !emptyJSON(f.Value) {
			return fmt.Errorf("field \"%s%s\" is not supported (only null or empty is accepted)", prefix, f.Key)
		}
	}
	return nil
}

// emptyJSON reports whether v is null, "", [] or {}.
func emptyJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case chat.Object:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

func toolName(t any) (string, error) {
	o, ok := t.(chat.Object)
	if !ok {
		return "", fmt.Errorf("expected an object")
	}
	if typ, _ := o.Get("type"); typ != "function" {
		return "", fmt.Errorf("field \"type\" must be \"function\"")
	}
	if err := checkKeys(o, "", toolKeys); err != nil {
		return "", err
	}
	fn, _ := o.Get("function")
	fo, ok := fn.(chat.Object)
	if !ok {
		return "", fmt.Errorf("field \"function\" must be an object")
	}
	if err := checkKeys(fo, "function.", toolFunctionKeys); err != nil {
		return "", err
	}
	name, _ := fo.Get("name")
	s, ok := name.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("field \"function.name\" must be a non-empty string")
	}
	return s, nil
}

// applyToolChoice: "auto" (default) offers every tool, "none" offers none,
// "required" offers every tool and forces a call of one of them,
// {"type": "function", "function": {"name": N}} offers only N and forces a
// call of it (constrained decoding).
func (in *chatInput) applyToolChoice(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto", "required":
			if mode == "required" {
				if len(in.tools) == 0 {
					return invalid("tool_choice", "tool_choice \"required\" needs tools")
				}
				in.forceTool = true
			}
		case "none":
			in.tools = nil
		default:
			return invalid("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or a function, got %q", mode)
		}
		return nil
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return invalid("tool_choice", "tool_choice object must be {\"type\": \"function\", \"function\": {\"name\": ...}}")
	}
	for _, t := range in.tools {
		if n, _ := toolName(t); n == named.Function.Name {
			in.tools, in.forceTool = []any{t}, true
			return nil
		}
	}
	return invalid("tool_choice", "tool_choice names %q, which is not among the tools", named.Function.Name)
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	p, err := s.pool(req.Model)
	if err != nil {
		writeError(w, err)
		return
	}
	o, err := s.sampling(&req.samplingFields, p)
	if err != nil {
		writeError(w, err)
		return
	}
	in, err := parseChatInput(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	if req.TopLogprobs != nil && *req.TopLogprobs != 0 {
		writeError(w, invalid("top_logprobs", "logprobs are not supported"))
		return
	}
	if err := checkTemplateKwargs(req.ChatTemplateKwargs, p.TemplateSource); err != nil {
		writeError(w, err)
		return
	}
	spec, err := parseOutputSpec(&req, in, p.ToolFormat)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	e, release, err := s.acquire(ctx, p)
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()
	prompt, err := e.Prompt(in.msgs, chat.Options{Tools: in.tools, Extra: in.extra})
	if err != nil {
		writeError(w, invalid("messages", "chat template: %v", err))
		return
	}
	nPrompt := e.CountTokens(prompt)
	maxTokens, err := s.budget(p, o, nPrompt)
	if err != nil {
		writeError(w, err)
		return
	}
	inThink := strings.HasSuffix(strings.TrimRightFunc(prompt, isSpace), thinkOpen)
	if spec.active() {
		// A prompt that ends with a closed block (enable_thinking off)
		// leaves no reasoning to the model.
		mayThink := p.Reasoning && !inThink && !strings.HasSuffix(strings.TrimRightFunc(prompt, isSpace), thinkClose)
		o.grammar = spec.grammar(p.ToolFormat, inThink, mayThink)
	}
	parser := NewParser(p.ToolFormat, in.toolsOn, inThink)
	id, created := newID("chatcmpl-"), time.Now().Unix()
	chunk := func(delta *chatMessage, finish *string) chatResponse {
		return chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: p.Name,
			Choices: []chatChoice{{Delta: delta, FinishReason: finish}}}
	}

	var stream *sse
	var content, reasoning strings.Builder
	emit := func(d Delta) {
		content.WriteString(d.Content)
		reasoning.WriteString(d.Reasoning)
		if stream != nil && (d.Content != "" || d.Reasoning != "") {
			m := &chatMessage{}
			if d.Content != "" {
				m.Content = &d.Content
			}
			if d.Reasoning != "" {
				m.ReasoningContent = &d.Reasoning
			}
			stream.send(chunk(m, nil))
		}
	}
	if o.stream {
		stream = startSSE(w, cancel)
		stream.send(chunk(&chatMessage{Role: "assistant", Content: ptr("")}, nil))
	}
	res, finish, err := s.run(ctx, e, prompt, maxTokens, o, func(t string) { emit(parser.Push(t)) })
	if err != nil {
		if r.Context().Err() != nil {
			return // the client left
		}
		if stream != nil {
			stream.fail(err)
		} else {
			writeError(w, err)
		}
		return
	}
	d, calls := parser.Finish()
	emit(d)
	toolCalls := make([]toolCallJSON, len(calls))
	for i, c := range calls {
		toolCalls[i] = toolCallJSON{ID: newID("call_"), Type: "function",
			Function: functionCall{Name: c.Name, Arguments: c.Arguments}}
	}
	if len(calls) > 0 {
		finish = "tool_calls"
	}
	u := newUsage(nPrompt, len(res.Tokens))
	if stream != nil {
		for i := range toolCalls {
			tc := toolCalls[i]
			tc.Index = ptr(i)
			stream.send(chunk(&chatMessage{ToolCalls: []toolCallJSON{tc}}, nil))
		}
		stream.send(chunk(&chatMessage{}, &finish))
		if o.includeUsage {
			stream.send(chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: p.Name,
				Choices: []chatChoice{}, Usage: u})
		}
		stream.done()
		return
	}
	msg := &replyMessage{Role: "assistant", ToolCalls: toolCalls}
	if c := content.String(); c != "" || len(calls) == 0 {
		msg.Content = &c // else null, as OpenAI sends with tool calls
	}
	if rc := reasoning.String(); rc != "" {
		msg.ReasoningContent = &rc
	}
	writeJSON(w, http.StatusOK, chatResponse{ID: id, Object: "chat.completion", Created: created, Model: p.Name,
		Choices: []chatChoice{{Message: msg, FinishReason: &finish}}, Usage: u})
}

func isSpace(r rune) bool { return r == ' ' || r == '\n' || r == '\t' || r == '\r' }

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := s.readJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	p, err := s.pool(req.Model)
	if err != nil {
		writeError(w, err)
		return
	}
	o, err := s.sampling(&req.samplingFields, p)
	if err != nil {
		writeError(w, err)
		return
	}
	o.raw = true
	if req.Echo != nil && *req.Echo {
		writeError(w, invalid("echo", "echo is not supported"))
		return
	}
	if req.BestOf != nil && *req.BestOf != 1 {
		writeError(w, invalid("best_of", "only best_of=1 is supported, got %d", *req.BestOf))
		return
	}
	if len(req.Suffix) > 0 && string(req.Suffix) != "null" && string(req.Suffix) != `""` {
		writeError(w, invalid("suffix", "suffix (insertion) is not supported"))
		return
	}
	var prompt string
	if json.Unmarshal(req.Prompt, &prompt) != nil {
		var list []string
		if json.Unmarshal(req.Prompt, &list) != nil || len(list) != 1 {
			writeError(w, invalid("prompt", "prompt is required: a string (or an array of exactly one string)"))
			return
		}
		prompt = list[0]
	}
	if prompt == "" {
		writeError(w, invalid("prompt", "prompt must not be empty"))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	e, release, err := s.acquire(ctx, p)
	if err != nil {
		writeError(w, err)
		return
	}
	defer release()
	nPrompt := e.CountTokens(prompt)
	maxTokens, err := s.budget(p, o, nPrompt)
	if err != nil {
		writeError(w, err)
		return
	}
	id, created := newID("cmpl-"), time.Now().Unix()
	chunk := func(text string, finish *string) completionResponse {
		return completionResponse{ID: id, Object: "text_completion", Created: created, Model: p.Name,
			Choices: []completionChoice{{Text: text, FinishReason: finish}}}
	}
	var stream *sse
	var text strings.Builder
	if o.stream {
		stream = startSSE(w, cancel)
	}
	res, finish, err := s.run(ctx, e, prompt, maxTokens, o, func(t string) {
		text.WriteString(t)
		if stream != nil {
			stream.send(chunk(t, nil))
		}
	})
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		if stream != nil {
			stream.fail(err)
		} else {
			writeError(w, err)
		}
		return
	}
	if res.PromptTokens > 0 {
		nPrompt = res.PromptTokens // with the BOS a raw prompt gets
	}
	u := newUsage(nPrompt, len(res.Tokens))
	if stream != nil {
		stream.send(chunk("", &finish))
		if o.includeUsage {
			stream.send(completionResponse{ID: id, Object: "text_completion", Created: created, Model: p.Name,
				Choices: []completionChoice{}, Usage: u})
		}
		stream.done()
		return
	}
	resp := chunk(text.String(), &finish)
	resp.Usage = u
	writeJSON(w, http.StatusOK, resp)
}
