package demo

import (
	"context"
	"fmt"
	"sync"
)

// RunAll runs the scenarios concurrently, each in its own namespaces, and
// returns their results in the given order. A panic inside one scenario
// becomes that scenario's error (its namespaces are already gone: Run's
// deferred teardown ran while the panic unwound).
func RunAll(ctx context.Context, scenarios []Scenario, opt Options) []*Result {
	results := make([]*Result, len(scenarios))
	var wg sync.WaitGroup
	for i, sc := range scenarios {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					results[i] = &Result{Scenario: sc, Err: fmt.Errorf("demo: scenario %s: panic: %v", sc.ID, p)}
				}
			}()
			results[i] = Run(ctx, sc, opt)
		}()
	}
	wg.Wait()
	return results
}
