package credits

import "luna"

// InsufficientError is a refusal for credits that says what the request
// needs and what the user has available. It is ErrInsufficientCredits for
// errors.Is, and its *luna.Error (insufficient_credits) says both figures.
type InsufficientError struct {
	Needed    int64 // credits the request needs at least
	Available int64 // the user's available credits (balance − held)
}

func (e *InsufficientError) Error() string { return e.Unwrap().Error() }

// Unwrap returns the error as clients see it.
func (e *InsufficientError) Unwrap() error {
	return luna.Errorf(luna.CodeInsufficientCredits,
		"Not enough credits: this needs at least %d credits and %d are available.", e.Needed, e.Available)
}

// Is makes errors.Is(err, ErrInsufficientCredits) hold.
func (e *InsufficientError) Is(target error) bool { return target == ErrInsufficientCredits }
