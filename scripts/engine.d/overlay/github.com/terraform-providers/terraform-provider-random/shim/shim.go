// Package shim stands in for the nested module that pulumi-random's provider/go.mod
// replaces with ./shim. That module is not published on the Go module proxy (a
// module zip never contains nested modules), so scripts/engine supplies this copy.
// Its path sits inside the Terraform provider's tree, which is what lets it reach
// the provider's internal package.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"
	randomprovider "github.com/terraform-providers/terraform-provider-random/internal/provider"
)

// NewProvider returns the upstream Terraform random provider.
func NewProvider() provider.Provider {
	return randomprovider.New()
}
