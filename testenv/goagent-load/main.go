// goagent-load loads what the Rust agent left in a cluster with the calls
// Kyma's Go compass-runtime-agent makes on start and in each cycle, so that a
// swap back to the Go agent is known to work. It reads one JSON document on
// stdin (see Input), prints "ok: ..." and exits 0 when the Go agent could
// work from those objects, or prints what it could not load and exits 1.
//
// Only the standard library: the Go agent's own loading code uses nothing
// else for these objects (crypto/tls, crypto/x509, encoding/pem,
// encoding/json, and metav1.Time, whose JSON form is RFC 3339 or null).
package main

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Input: the objects as the API server returns them.
type Input struct {
	ClusterCertificates secret             `json:"clusterCertificates"`
	CACertificates      secret             `json:"caCertificates"`
	CompassConnection   json.RawMessage    `json:"compassConnection"`
	Applications        []json.RawMessage  `json:"applications"`
	Secrets             []secret           `json:"secrets"`
	Settings            map[string]float64 `json:"settings"`
}

type secret struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Data map[string][]byte `json:"data"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("cannot read stdin: %v", err)
	}
	var input Input
	if err := json.Unmarshal(raw, &input); err != nil {
		fail("the input is not the expected JSON: %v", err)
	}
	var report []string
	credentials, err := loadClientCredentials(input.ClusterCertificates.Data)
	if err != nil {
		fail("client credentials (%s): %v", input.ClusterCertificates.Metadata.Name, err)
	}
	report = append(report, fmt.Sprintf("client certificate %q with a chain of %d", credentials.leaf.Subject.CommonName, len(credentials.chain)))
	cas, err := decodeCertificates(input.CACertificates.Data["cacert"])
	if err != nil {
		fail("CA certificate (%s, key cacert): %v", input.CACertificates.Metadata.Name, err)
	}
	report = append(report, fmt.Sprintf("%d CA certificate(s)", len(cas)))
	if len(input.CompassConnection) > 0 {
		state, err := loadCompassConnection(input.CompassConnection, credentials.leaf, input.Settings)
		if err != nil {
			fail("CompassConnection: %v", err)
		}
		report = append(report, "CompassConnection "+state)
	}
	for _, app := range input.Applications {
		if err := loadApplication(app); err != nil {
			fail("Application: %v", err)
		}
	}
	if len(input.Applications) > 0 {
		report = append(report, fmt.Sprintf("%d Application(s)", len(input.Applications)))
	}
	for _, s := range input.Secrets {
		if err := loadApplicationSecret(s); err != nil {
			fail("Secret %s: %v", s.Metadata.Name, err)
		}
	}
	if len(input.Secrets) > 0 {
		report = append(report, fmt.Sprintf("%d credential Secret(s)", len(input.Secrets)))
	}
	fmt.Println("ok: " + strings.Join(report, ", "))
}

func fail(format string, args ...any) {
	fmt.Printf("go agent cannot load: "+format+"\n", args...)
	os.Exit(1)
}

type clientCredentials struct {
	key   *rsa.PrivateKey
	leaf  *x509.Certificate
	chain []*x509.Certificate
}

// What the Go agent's credentialsManager.GetClientCredentials and
// ClientCredentials.AsTLSCertificate do with keys crt, key and crtChain; a key
// it cannot parse ends its start fatally.
func loadClientCredentials(data map[string][]byte) (clientCredentials, error) {
	chain, err := decodeCertificates(data["crtChain"])
	if err != nil {
		return clientCredentials{}, fmt.Errorf("Failed to decode certificate chain: %w", err)
	}
	leaf, err := decodeCertificate(data["crt"])
	if err != nil {
		return clientCredentials{}, fmt.Errorf("Failed to decode client certificate: %w", err)
	}
	key, err := parsePrivateKey(data["key"])
	if err != nil {
		return clientCredentials{}, fmt.Errorf("Failed to decode client key: %w", err)
	}
	// The TLS identity the Go agent presents: the key and the chain's blocks.
	var rawCerts [][]byte
	for _, cert := range chain {
		rawCerts = append(rawCerts, cert.Raw)
	}
	if _, err := tls.X509KeyPair(data["crtChain"], data["key"]); err != nil {
		return clientCredentials{}, fmt.Errorf("tls.X509KeyPair(crtChain, key): %w", err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return clientCredentials{}, errors.New("the key does not belong to the client certificate")
	}
	if len(rawCerts) == 0 || string(rawCerts[0]) != string(leaf.Raw) {
		return clientCredentials{}, errors.New("the chain does not start with the client certificate")
	}
	return clientCredentials{key: key, leaf: leaf, chain: chain}, nil
}

// certificates.ParsePrivateKey: PKCS#1 only.
func parsePrivateKey(clusterKey []byte) (*rsa.PrivateKey, error) {
	if clusterKey == nil {
		return nil, errors.New("Private key data is empty")
	}
	block, _ := pem.Decode(clusterKey)
	if block == nil {
		return nil, errors.New("Failed to decode client key pem")
	}
	return x509.ParsePKCS1PrivateKey(block.Bytes)
}

func decodeCertificate(certificate []byte) (*x509.Certificate, error) {
	certs, err := decodeCertificates(certificate)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// certificates.decodeCertificates, loop and all.
func decodeCertificates(certificate []byte) ([]*x509.Certificate, error) {
	if certificate == nil {
		return nil, errors.New("Certificate data is empty")
	}
	var certificates []*x509.Certificate
	for block, rest := pem.Decode(certificate); block != nil && rest != nil; {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("Failed to decode one of the pem blocks: %w", err)
		}
		certificates = append(certificates, cert)
		block, rest = pem.Decode(rest)
	}
	if len(certificates) == 0 {
		return nil, errors.New("No certificates found in the pem block")
	}
	return certificates, nil
}

// metav1.Time's JSON: null or RFC 3339.
type metaTime struct{ time.Time }

func (t *metaTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var text string
	if err := json.Unmarshal(b, &text); err != nil {
		return err
	}
	parsed, err := time.Parse(time.RFC3339, text)
	if err != nil {
		return err
	}
	t.Time = parsed.Local()
	return nil
}

// The Go agent's v1alpha1.CompassConnection, the fields it reads.
type compassConnection struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		ManagementInfo struct {
			DirectorURL  string `json:"directorUrl"`
			ConnectorURL string `json:"connectorUrl"`
		} `json:"managementInfo"`
		ResyncNow             bool `json:"resyncNow,omitempty"`
		RefreshCredentialsNow bool `json:"refreshCredentialsNow,omitempty"`
	} `json:"spec"`
	Status struct {
		State            string `json:"connectionState"`
		ConnectionStatus *struct {
			Established       metaTime `json:"established"`
			Renewed           metaTime `json:"renewed,omitempty"`
			LastSync          metaTime `json:"lastSync"`
			LastSuccess       metaTime `json:"lastSuccess"`
			CertificateStatus struct {
				Acquired  metaTime `json:"acquired"`
				NotBefore metaTime `json:"notBefore"`
				NotAfter  metaTime `json:"notAfter"`
			} `json:"certificateStatus"`
			Error string `json:"error,omitempty"`
		} `json:"connectionStatus"`
		SynchronizationStatus *struct {
			LastAttempt               metaTime `json:"lastAttempt"`
			LastSuccessfulFetch       metaTime `json:"lastSuccessfulFetch"`
			LastSuccessfulApplication metaTime `json:"lastSuccessfulApplication"`
			Error                     string   `json:"error,omitempty"`
		} `json:"synchronizationStatus"`
	} `json:"status,omitempty"`
}

var states = map[string]bool{
	"Connected": true, "ConnectionFailed": true, "ConnectionMaintenanceFailed": true,
	"SynchronizationFailed": true, "ResourceApplicationFailed": true,
	"MetadataUpdateFailed": true, "Synchronized": true,
}

// What the Go agent's supervisor reads of compass-connection in a cycle
// (it dereferences connectionStatus, and renews by certificateStatus).
func loadCompassConnection(raw []byte, leaf *x509.Certificate, settings map[string]float64) (string, error) {
	var connection compassConnection
	if err := json.Unmarshal(raw, &connection); err != nil {
		return "", err
	}
	if connection.Metadata.Name != "compass-connection" {
		return "", fmt.Errorf("named %q", connection.Metadata.Name)
	}
	status := connection.Status
	if !states[status.State] {
		return "", fmt.Errorf("connectionState %q is not one the Go agent knows", status.State)
	}
	if status.State == "ConnectionFailed" {
		return status.State, nil
	}
	if connection.Spec.ManagementInfo.DirectorURL == "" || connection.Spec.ManagementInfo.ConnectorURL == "" {
		return "", errors.New("spec.managementInfo lacks a URL")
	}
	if status.ConnectionStatus == nil {
		return "", errors.New("status.connectionStatus is missing (the Go agent dereferences it)")
	}
	cert := status.ConnectionStatus.CertificateStatus
	if !cert.NotBefore.Equal(leaf.NotBefore) || !cert.NotAfter.Equal(leaf.NotAfter) {
		return "", fmt.Errorf("certificateStatus %v..%v is not the stored certificate's %v..%v", cert.NotBefore, cert.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	// CompassConnection.ShouldRenewCertificate, with the deployment's settings.
	threshold, minimal := settings["renewalThreshold"], settings["minimalSyncSeconds"]
	notBefore, notAfter := cert.NotBefore.Unix(), cert.NotAfter.Unix()
	timeLeft := float64(notAfter - time.Now().Unix())
	renew := connection.Spec.RefreshCredentialsNow ||
		timeLeft < float64(notAfter-notBefore)*threshold || timeLeft < 2*minimal
	return fmt.Sprintf("%s (renews at once: %v)", status.State, renew), nil
}

// The Application fields the Go agent reads and compares (the central
// application gateway's v1alpha1 types).
type application struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Description     string            `json:"description"`
		Services        []service         `json:"services"`
		Labels          map[string]string `json:"labels"`
		CompassMetadata *struct {
			ApplicationID  string `json:"applicationId"`
			Authentication struct {
				ClientIds []string `json:"clientIds"`
			} `json:"authentication"`
		} `json:"compassMetadata,omitempty"`
		SkipVerify bool `json:"skipVerify"`
	} `json:"spec"`
}

type service struct {
	ID          string  `json:"id"`
	Identifier  string  `json:"identifier"`
	Name        string  `json:"name"`
	DisplayName string  `json:"displayName"`
	Description string  `json:"description"`
	Entries     []entry `json:"entries"`
}

type entry struct {
	Type        string `json:"type"`
	TargetUrl   string `json:"targetUrl"`
	Credentials struct {
		Type       string `json:"type"`
		SecretName string `json:"secretName"`
	} `json:"credentials,omitempty"`
	RequestParametersSecretName string `json:"requestParametersSecretName,omitempty"`
	Name                        string `json:"name"`
	ID                          string `json:"id"`
	CentralGatewayUrl           string `json:"centralGatewayUrl"`
}

func loadApplication(raw []byte) error {
	var app application
	if err := json.Unmarshal(raw, &app); err != nil {
		return err
	}
	if app.Spec.CompassMetadata == nil {
		return fmt.Errorf("%s has no compassMetadata: the Go agent would not manage it", app.Metadata.Name)
	}
	if app.Metadata.Labels["applicationconnector.kyma-project.io/managed-by"] != "compass-runtime-agent" {
		return fmt.Errorf("%s lacks the managed-by label", app.Metadata.Name)
	}
	for _, s := range app.Spec.Services {
		for _, e := range s.Entries {
			if e.Type != "API" && e.Type != "Events" {
				return fmt.Errorf("%s: entry type %q", app.Metadata.Name, e.Type)
			}
		}
	}
	return nil
}

// appsecrets.MapToRequestParameters and the credential strategies' reads.
func loadApplicationSecret(s secret) error {
	if s.Metadata.Labels["app"] == "" || s.Metadata.Labels["bundleId"] == "" {
		return errors.New("lacks the app and bundleId labels")
	}
	for _, key := range []string{"headers", "queryParameters"} {
		if value, ok := s.Data[key]; ok {
			var parameters map[string][]string
			if err := json.Unmarshal(value, &parameters); err != nil {
				return fmt.Errorf("Failed to unmarshal %s, %v", key, err)
			}
		}
	}
	return nil
}
