module github.com/hashicorp/terraform-provider-tls/shim

go 1.21
