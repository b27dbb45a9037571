package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// The request bodies. A field gotune does not know is refused with a 400
// naming it: a client that sends one expects it to do something, and
// ignoring it would give a wrong result without a word. OpenAI fields that
// change nothing about the reply (user, metadata, store, service_tier,
// prompt_cache_key, safety_identifier) are accepted and ignored; fields
// gotune does not implement (penalties, logit_bias, logprobs, echo, ...)
// are accepted only at their default value, which is what it does.

type samplingFields struct {
	Model               string          `json:"model"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`              // extension (vLLM)
	RepetitionPenalty   *float64        `json:"repetition_penalty"` // extension (vLLM)
	Seed                *int64          `json:"seed"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stop                json.RawMessage `json:"stop"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
		// Padding of stream events against side channels: without
		// encryption in between it protects nothing here; accepted.
		IncludeObfuscation *bool `json:"include_obfuscation"`
	} `json:"stream_options"`

	// Accepted only at their defaults: not implemented.
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	Logprobs         json.RawMessage    `json:"logprobs"` // chat: a boolean; completions: an integer

	// Accepted and ignored: they only identify or label the request.
	User json.RawMessage `json:"user"`
}

type chatRequest struct {
	samplingFields
	Messages           json.RawMessage            `json:"messages"`
	Tools              json.RawMessage            `json:"tools"`
	ToolChoice         json.RawMessage            `json:"tool_choice"`
	ParallelToolCalls  *bool                      `json:"parallel_tool_calls"`
	ResponseFormat     json.RawMessage            `json:"response_format"`
	ChatTemplateKwargs map[string]json.RawMessage `json:"chat_template_kwargs"` // extension (vLLM)
	TopLogprobs        *int                       `json:"top_logprobs"`         // default only

	// Accepted and ignored.
	Metadata         json.RawMessage `json:"metadata"`
	Store            json.RawMessage `json:"store"`
	ServiceTier      json.RawMessage `json:"service_tier"`
	PromptCacheKey   json.RawMessage `json:"prompt_cache_key"`
	SafetyIdentifier json.RawMessage `json:"safety_identifier"`
}

type completionRequest struct {
	samplingFields
	Prompt json.RawMessage `json:"prompt"`
	// Accepted only at their defaults.
	Echo   *bool           `json:"echo"`
	BestOf *int            `json:"best_of"`
	Suffix json.RawMessage `json:"suffix"`
}

// The response bodies.

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(prompt, completion int) *usage {
	return &usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

type functionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type toolCallJSON struct {
	Index    *int         `json:"index,omitempty"` // streaming deltas only
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function functionCall `json:"function"`
}

type chatMessage struct {
	Role             string         `json:"role,omitempty"`
	Content          *string        `json:"content,omitempty"`
	ReasoningContent *string        `json:"reasoning_content,omitempty"`
	ToolCalls        []toolCallJSON `json:"tool_calls,omitempty"`
}

// replyMessage is a whole (not streamed) reply. Its content is always
// there: null when the reply is only tool calls, as in OpenAI's API.
type replyMessage struct {
	Role             string         `json:"role"`
	Content          *string        `json:"content"`
	ReasoningContent *string        `json:"reasoning_content,omitempty"`
	ToolCalls        []toolCallJSON `json:"tool_calls,omitempty"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      *replyMessage `json:"message,omitempty"`
	Delta        *chatMessage  `json:"delta,omitempty"`
	FinishReason *string       `json:"finish_reason"`
	Logprobs     any           `json:"logprobs"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	FinishReason *string `json:"finish_reason"`
	Logprobs     any     `json:"logprobs"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

type modelJSON struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// apiError is an error in OpenAI's shape:
// {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func newError(status int, typ, code, param, format string, a ...any) *apiError {
	e := &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, a...)}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

// invalid is a 400 about one request field.
func invalid(param, format string, a ...any) *apiError {
	return newError(http.StatusBadRequest, "invalid_request_error", "", param, format, a...)
}

func writeError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = newError(http.StatusInternalServerError, "server_error", "", "", "%v", err)
	}
	if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ptr[T any](v T) *T { return &v }
