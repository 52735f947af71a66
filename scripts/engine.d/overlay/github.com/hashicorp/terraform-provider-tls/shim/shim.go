// Package shim stands in for the nested module that pulumi-tls's provider/go.mod
// replaces with ./shim. That module is not published on the Go module proxy (a
// module zip never contains nested modules), so scripts/engine supplies this copy.
// Its path sits inside the Terraform provider's tree, which is what lets it reach
// the provider's internal package.
package shim

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"
	tlsprovider "github.com/hashicorp/terraform-provider-tls/internal/provider"
)

// NewProvider returns the upstream Terraform TLS provider.
func NewProvider() provider.Provider {
	return tlsprovider.New()
}
