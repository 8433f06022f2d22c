// Prints OPA's own Rego conformance cases as JSON, read with OPA's own loader (v1/test/cases), for
// CLAIIM's conformance test (test/conformance/opa-conformance.test.ts). Numbers keep their exact
// text, and input_term (a Rego term) is turned into JSON where JSON can express it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/test/cases"
)

type out struct {
	Note                 string            `json:"note"`
	File                 string            `json:"file"`
	Query                string            `json:"query"`
	QueryVars            []string          `json:"query_vars"`
	Modules              []string          `json:"modules"`
	Data                 *map[string]any   `json:"data,omitempty"`
	Input                *any              `json:"input,omitempty"`
	InputNotJSON         string            `json:"input_not_json,omitempty"`
	WantDefined          *bool             `json:"want_defined,omitempty"`
	WantResult           *[]map[string]any `json:"want_result,omitempty"`
	WantErrorCode        *string           `json:"want_error_code,omitempty"`
	WantError            *string           `json:"want_error,omitempty"`
	SortBindings         bool              `json:"sort_bindings"`
	IgnoreGeneratedVars  bool              `json:"ignore_generated_vars"`
	StrictError          bool              `json:"strict_error"`
	ExperimentalKeywords bool              `json:"experimental_keywords"`
	Env                  map[string]string `json:"env,omitempty"`
}

// jsonExpressible says why a term is not plain JSON (a set, a non-string key, a variable), or "".
func jsonExpressible(t *ast.Term) string {
	why := ""
	ast.WalkTerms(t, func(x *ast.Term) bool {
		if why != "" {
			return true
		}
		switch v := x.Value.(type) {
		case ast.Set:
			why = "a set"
		case ast.Object:
			for _, k := range v.Keys() {
				if _, ok := k.Value.(ast.String); !ok {
					why = "an object with a non-string key"
				}
			}
		case ast.Var, ast.Ref, *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension, ast.Call:
			why = "a term that is not a value"
		}
		return why != ""
	})
	return why
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: opa-cases <testdata dir>")
		os.Exit(2)
	}
	root := os.Args[1]
	set, err := cases.Load(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	result := make([]out, 0, len(set.Cases))
	for _, tc := range set.Sorted().Cases {
		rel, _ := filepath.Rel(root, tc.Filename)
		o := out{
			Note: tc.Note, File: rel, Query: tc.Query, Modules: tc.Modules, Data: tc.Data, Input: tc.Input,
			WantDefined: tc.WantDefined, WantResult: tc.WantResult, WantErrorCode: tc.WantErrorCode, WantError: tc.WantError,
			SortBindings: tc.SortBindings, IgnoreGeneratedVars: tc.IgnoreGeneratedVars, StrictError: tc.StrictError,
			ExperimentalKeywords: tc.ExperimentalKeywords, Env: tc.Env, QueryVars: []string{},
		}
		if o.Modules == nil {
			o.Modules = []string{}
		}
		// The variables a query binds, as OPA's evaluator reports them: not wildcards, not inside closures.
		if body, err := ast.ParseBodyWithOpts(tc.Query, ast.ParserOptions{RegoVersion: ast.RegoV1}); err == nil {
			vis := ast.NewVarVisitor().WithParams(ast.VarVisitorParams{SkipClosures: true, SkipRefCallHead: true})
			vis.Walk(body)
			for v := range vis.Vars() {
				if !v.IsWildcard() && !v.IsGenerated() && !ast.RootDocumentNames.Contains(ast.NewTerm(v)) {
					o.QueryVars = append(o.QueryVars, string(v))
				}
			}
			sort.Strings(o.QueryVars)
		}
		if tc.InputTerm != nil {
			term, err := ast.ParseTerm(*tc.InputTerm)
			if err != nil {
				o.InputNotJSON = "input_term does not parse: " + err.Error()
			} else if why := jsonExpressible(term); why != "" {
				o.InputNotJSON = "input_term holds " + why
			} else {
				v, err := ast.JSON(term.Value)
				if err != nil {
					o.InputNotJSON = err.Error()
				} else {
					o.Input = &v
				}
			}
		}
		result = append(result, o)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
