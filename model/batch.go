package model

import "fmt"

// IgnoreIndex marks a label that is not trained, as in Hugging Face.
const IgnoreIndex = -100

// Batch is B token sequences of length T, right-padded. As in Hugging Face,
// Labels[t] is the token expected at t; the shift that makes position t-1
// predict it happens inside the loss.
type Batch struct {
	B, T   int
	IDs    []int32 // [B·T]
	Labels []int32 // [B·T]; IgnoreIndex where not trained; nil for inference
	Mask   []int32 // attention mask [B·T]; nil means all ones
	Pos    []int32 // position ids [B·T]; nil means 0…T-1 in every row
	Seg    []int32 // packed-sample ids [B·T]; nil when rows are not packed (must be nil with a KV prefix or virtual tokens)
}

// Validate checks the shapes and ids against the model's vocabulary.
func (b *Batch) Validate(vocab int) error {
	n := b.B * b.T
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("batch: empty (B=%d, T=%d)", b.B, b.T)
	}
	check := func(name string, s []int32) error {
		if s != nil && len(s) != n {
			return fmt.Errorf("batch: %s has %d values, want B·T = %d", name, len(s), n)
		}
		return nil
	}
	for _, e := range []error{check("input_ids", b.IDs), check("labels", b.Labels), check("attention_mask", b.Mask),
		check("position_ids", b.Pos), check("segment ids", b.Seg)} {
		if e != nil {
			return e
		}
	}
	if b.IDs == nil {
		return fmt.Errorf("batch: input_ids missing")
	}
	for i, id := range b.IDs {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("batch: input_ids[%d][%d] = %d is outside the vocabulary [0, %d)", i/b.T, i%b.T, id, vocab)
		}
	}
	for i, p := range b.Pos {
		if p < 0 {
			return fmt.Errorf("batch: position_ids[%d][%d] = %d is negative", i/b.T, i%b.T, p)
		}
	}
	for i, id := range b.Labels {
		if id != IgnoreIndex && (id < 0 || int(id) >= vocab) {
			return fmt.Errorf("batch: labels[%d][%d] = %d is outside the vocabulary [0, %d)", i/b.T, i%b.T, id, vocab)
		}
	}
	return nil
}

// TrainedTokens counts the labels that contribute to the loss (after the shift).
func (b *Batch) TrainedTokens() int {
	n := 0
	if b.Labels == nil {
		return 0
	}
	for r := 0; r < b.B; r++ {
		for t := 1; t < b.T; t++ {
			if b.Labels[r*b.T+t] != IgnoreIndex {
				n++
			}
		}
	}
	return n
}
