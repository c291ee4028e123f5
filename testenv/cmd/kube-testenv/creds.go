package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	etcdversion "go.etcd.io/etcd/api/v3/version"
)

type urlT = url.URL

func parseURL(s string) (url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, err
	}
	return *u, nil
}

func etcdVersion() string { return "v" + etcdversion.Version }

// credentials are the PEM files written into <data-dir>/pki and their contents.
type credentials struct {
	caCertFile, caKeyFile           string
	servingCertFile, servingKeyFile string
	adminCertFile, adminKeyFile     string
	saKeyFile, saPubFile            string

	caCertPEM, adminCertPEM, adminKeyPEM []byte
}

func (c *credentials) adminTLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caCertPEM)
	pair, err := tls.X509KeyPair(c.adminCertPEM, c.adminKeyPEM)
	if err != nil {
		panic(err) // we generated them ourselves a moment ago
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
}

func writeFile(path string, data []byte) error {
	return os.WriteFile(path, data, 0o600)
}

// generateCredentials makes a CA, a serving certificate for the loopback
// addresses, an admin client certificate (CN=testenv-admin, O=system:masters)
// and a service-account signing key.
func generateCredentials(dataDir string) (*credentials, error) {
	dir := filepath.Join(dataDir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &credentials{
		caCertFile:      filepath.Join(dir, "ca.crt"),
		caKeyFile:       filepath.Join(dir, "ca.key"),
		servingCertFile: filepath.Join(dir, "apiserver.crt"),
		servingKeyFile:  filepath.Join(dir, "apiserver.key"),
		adminCertFile:   filepath.Join(dir, "admin.crt"),
		adminKeyFile:    filepath.Join(dir, "admin.key"),
		saKeyFile:       filepath.Join(dir, "service-account.key"),
		saPubFile:       filepath.Join(dir, "service-account.pub"),
	}
	now := time.Now().Add(-time.Hour)
	notAfter := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "kube-testenv-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	c.caCertPEM = certPEM(caDER)
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}

	issue := func(tmpl *x509.Certificate) (certOut, keyOut []byte, err error) {
		key, err := newKey()
		if err != nil {
			return nil, nil, err
		}
		if tmpl.SerialNumber, err = serial(); err != nil {
			return nil, nil, err
		}
		tmpl.NotBefore, tmpl.NotAfter = now, notAfter
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
		if err != nil {
			return nil, nil, err
		}
		kp, err := keyPEM(key)
		if err != nil {
			return nil, nil, err
		}
		return certPEM(der), kp, nil
	}

	servingCert, servingKey, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")},
	})
	if err != nil {
		return nil, err
	}
	c.adminCertPEM, c.adminKeyPEM, err = issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "testenv-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	saKey, err := newKey()
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	saPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER})

	for path, data := range map[string][]byte{
		c.caCertFile:      c.caCertPEM,
		c.caKeyFile:       caKeyPEM,
		c.servingCertFile: servingCert,
		c.servingKeyFile:  servingKey,
		c.adminCertFile:   c.adminCertPEM,
		c.adminKeyFile:    c.adminKeyPEM,
		c.saKeyFile:       saKeyPEM,
		c.saPubFile:       saPubPEM,
	} {
		if err := writeFile(path, data); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// writeKubeconfig writes a kubeconfig for the admin user with everything
// embedded, so that it works from any working directory.
func writeKubeconfig(path, server string, c *credentials) error {
	b64 := base64.StdEncoding.EncodeToString
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: testenv-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-admin
    namespace: default
current-context: testenv
preferences: {}
`, server, b64(c.caCertPEM), b64(c.adminCertPEM), b64(c.adminKeyPEM))
	tmp := path + ".tmp"
	if err := writeFile(tmp, []byte(kc)); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
