{{/* The objects' name: the release name, or release-chart when it does not hold the chart name. */}}
{{- define "dvi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels the Service, the disruption budget and the spread select by (as `manifests`). */}}
{{- define "dvi.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "dvi.labels" -}}
{{ include "dvi.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dvi.tlsSecret" -}}
{{- if eq .Values.certificates.mode "existingSecret" -}}
{{- required "certificates.existingSecret is required with mode existingSecret" .Values.certificates.existingSecret -}}
{{- else -}}
{{- include "dvi.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{- define "dvi.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Every DNS name of the Service (webhook.certs.service_names). */}}
{{- define "dvi.dnsNames" -}}
{{- $name := include "dvi.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns) | toJson -}}
{{- end -}}

{{/* A LabelSelector with its empty parts left out, as JSON (the policy's selector
     as `manifests` writes it: pydantic's exclude_defaults). */}}
{{- define "dvi.selector" -}}
{{- if not (or .matchLabels .matchExpressions) -}}
{{- fail "policy: a selector needs matchLabels or matchExpressions (an empty one would select every pod)" -}}
{{- end -}}
{{- $out := dict -}}
{{- if .matchLabels -}}{{- $_ := set $out "matchLabels" .matchLabels -}}{{- end -}}
{{- if .matchExpressions -}}
{{- $exprs := list -}}
{{- range .matchExpressions -}}
{{- $e := dict "key" .key "operator" .operator -}}
{{- if .values -}}{{- $_ := set $e "values" .values -}}{{- end -}}
{{- $exprs = append $exprs $e -}}
{{- end -}}
{{- $_ := set $out "matchExpressions" $exprs -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One selector in canonical form (webhook.engine.policy._canonical): the sorted set of
     its requirements as JSON, matchLabels {k: v} written as k In [v], values sorted
     without duplicates. Go's json sorts keys and adds no spaces, as the Python does. */}}
{{- define "dvi.canonicalSelector" -}}
{{- $requirements := list -}}
{{- range $key, $value := (.matchLabels | default dict) -}}
{{- $requirements = append $requirements (dict "key" $key "operator" "In" "values" (list $value) | toJson) -}}
{{- end -}}
{{- range (.matchExpressions | default list) -}}
{{- $entry := dict "key" .key "operator" .operator -}}
{{- if .values -}}{{- $_ := set $entry "values" (.values | sortAlpha | uniq) -}}{{- end -}}
{{- $requirements = append $requirements ($entry | toJson) -}}
{{- end -}}
{{- printf "[%s]" (join "," ($requirements | sortAlpha | uniq)) -}}
{{- end -}}

{{/* The policy's selection in canonical form (webhook.engine.policy.canonical_selection),
     byte for byte: the set of every rule's selectors, the excluded namespaces as a set
     less kube-system (always excluded), the opt-in namespace selector. */}}
{{- define "dvi.selection" -}}
{{- $spec := .Values.policy.spec -}}
{{- $selectors := list -}}
{{- range $spec.rules -}}
{{- range .podSelectors -}}
{{- $selectors = append $selectors (include "dvi.canonicalSelector" .) -}}
{{- end -}}
{{- end -}}
{{- $excluded := without (($spec.excludeNamespaces | default list) | sortAlpha | uniq) "kube-system" -}}
{{- $optIn := "null" -}}
{{- if $spec.namespaceSelector -}}{{- $optIn = include "dvi.canonicalSelector" $spec.namespaceSelector -}}{{- end -}}
{{- $restricted := "" -}}
{{- if eq (($spec.podSecurity | default dict).clusterDefault | default "baseline") "restricted" -}}{{- $restricted = ",\"podSecurityDefault\":\"restricted\"" -}}{{- end -}}
{{- printf "{\"excludeNamespaces\":%s,\"namespaceSelector\":%s,\"podSelectors\":[%s]%s}" (toJson $excluded) $optIn (join "," ($selectors | sortAlpha | uniq)) $restricted -}}
{{- end -}}

{{/* The selection's fingerprint (webhook.engine.policy.selection_fingerprint). */}}
{{- define "dvi.selectionFingerprint" -}}
{{- include "dvi.selection" . | sha256sum | trunc 16 -}}
{{- end -}}

{{/* The CERTIFICATE blocks of a PEM caBundle, nothing else; one that holds a private
     key fails the render (certs.read_ca_bundle refuses it the same way). */}}
{{- define "dvi.certificatesOnly" -}}
{{- if contains "PRIVATE KEY" .pem -}}
{{- fail (printf "%s holds a private key: give only the CA certificate(s); the key must never reach a webhook configuration" .what) -}}
{{- end -}}
{{- $blocks := regexFindAll "-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----" .pem -1 -}}
{{- if not $blocks -}}
{{- fail (printf "%s holds no PEM certificate" .what) -}}
{{- end -}}
{{- printf "%s\n" (join "\n" $blocks) -}}
{{- end -}}

{{/* certificates.mode=generate: the CA and the serving certificate, as JSON (caCert,
     caKey, cert, key, notAfter, state). Pure: `existing` is the TLS Secret and `kept`
     the CA Secret as the cluster holds them (empty at install). The CA is made once
     and kept, with its key, in its own Secret (never mounted); the serving certificate
     is kept until it is within renewDays of its end, then re-issued from that CA, so
     the caBundle never changes. state: new, kept, renewed, or no-ca-key (an install
     from before the CA key was kept: it cannot renew). */}}
{{- define "dvi.certMaterial" -}}
{{- $root := .root -}}
{{- $fullname := include "dvi.fullname" $root -}}
{{- $data := (.existing | default dict).data | default dict -}}
{{- $caData := (.kept | default dict).data | default dict -}}
{{- $annotations := ((.existing | default dict).metadata | default dict).annotations | default dict -}}
{{- $days := int $root.Values.certificates.validityDays -}}
{{- $out := dict "caCert" "" "caKey" "" "cert" "" "key" "" "notAfter" "" "state" "new" -}}
{{- if index $caData "ca.key" -}}
{{- $_ := set $out "caCert" (index $caData "ca.crt" | b64dec) -}}
{{- $_ := set $out "caKey" (index $caData "ca.key" | b64dec) -}}
{{- else if index $data "ca.crt" -}}
{{- $_ := set $out "caCert" (index $data "ca.crt" | b64dec) -}}
{{- else -}}
{{- $ca := genCA (printf "%s CA" $fullname) 3650 -}}
{{- $_ := set $out "caCert" $ca.Cert -}}
{{- $_ := set $out "caKey" $ca.Key -}}
{{- end -}}
{{- $notAfter := index $annotations "volume-init.dify.ai/not-after" | default "" -}}
{{- $due := true -}}
{{- if and (index $data "tls.crt") $notAfter -}}
{{- $limit := (now | dateModify (printf "+%dh" (mul (int .renewDays) 24))).Unix -}}
{{- $due = lt (toDate "2006-01-02T15:04:05Z07:00" $notAfter).Unix $limit -}}
{{- end -}}
{{- if and (index $data "tls.crt") (or (not $due) (not $out.caKey)) -}}
{{- $_ := set $out "cert" (index $data "tls.crt" | b64dec) -}}
{{- $_ := set $out "key" (index $data "tls.key" | b64dec) -}}
{{- $_ := set $out "notAfter" $notAfter -}}
{{- $_ := set $out "state" (ternary "kept" "no-ca-key" (not (empty $out.caKey))) -}}
{{- else -}}
{{- $signer := buildCustomCert ($out.caCert | b64enc) ($out.caKey | b64enc) -}}
{{- $cert := genSignedCert $fullname nil (include "dvi.dnsNames" $root | fromJsonArray) $days $signer -}}
{{- $_ := set $out "cert" $cert.Cert -}}
{{- $_ := set $out "key" $cert.Key -}}
{{- $_ := set $out "notAfter" (now | dateModify (printf "+%dh" (mul $days 24)) | date "2006-01-02T15:04:05Z07:00") -}}
{{- $_ := set $out "state" (ternary "renewed" "new" (not (empty (index $data "tls.crt")))) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* dvi.certMaterial for the Secrets the cluster holds, worked out once per render
     (NOTES.txt and webhook.yaml both read it; a second genCA would differ). */}}
{{- define "dvi.generated" -}}
{{- if not (hasKey .Values "__dviGenerated") -}}
{{- $fullname := include "dvi.fullname" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "dvi.tlsSecret" .) -}}
{{- $kept := lookup "v1" "Secret" .Release.Namespace (printf "%s-ca" $fullname) -}}
{{- $material := include "dvi.certMaterial" (dict "root" . "existing" $existing "kept" $kept "renewDays" 30) | fromJson -}}
{{- $_ := set .Values "__dviGenerated" $material -}}
{{- end -}}
{{- toJson (get .Values "__dviGenerated") -}}
{{- end -}}

{{/* The paths a storage mount may never be, normalised (webhook.engine.hostpaths, as
     the policy model's mount path schema says it; a test holds the two equal). */}}
{{- define "dvi.systemPaths" -}}
^/(lib[^/]*(/.*)?|(etc|usr|bin|sbin|boot|dev|proc|sys|run|var/run|var/log|var/lib/kubelet|var/lib/docker|var/lib/containerd|var/lib/containers|var/lib/etcd|var/lib/rancher|var/lib/cni|opt/cni|var/lib/kube-proxy|var/lib/calico|var/lib/cilium)(/.*)?|opt|var|var/lib)?/?$
{{- end -}}

{{/* A Kubernetes quantity as a number (policy.quantity_value), for comparisons. */}}
{{- define "dvi.quantity" -}}
{{- $text := toString . -}}
{{- $number := float64 (regexReplaceAll "^([+]?[0-9]*[.]?[0-9]*).*$" $text "${1}") -}}
{{- $suffix := regexReplaceAll "^[+]?[0-9]*[.]?[0-9]*" $text "" -}}
{{- $scale := dict "" 1.0 "n" 0.000000001 "u" 0.000001 "m" 0.001 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "P" 1000000000000000.0 "E" 1000000000000000000.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- if hasKey $scale $suffix -}}
{{- $number = mulf $number (get $scale $suffix) -}}
{{- else -}}
{{- $exponent := int (trimPrefix "+" (substr 1 -1 $suffix)) -}}
{{- range until (int (max $exponent (sub 0 $exponent))) -}}
{{- $number = ternary (mulf $number 10) (divf $number 10) (gt $exponent 0) -}}
{{- end -}}
{{- end -}}
{{- $number -}}
{{- end -}}

{{/* What the policy model refuses and a JSON Schema cannot say: a mount path that is a
     system path once normalised (`/app/../etc`), and requests above limits. */}}
{{- define "dvi.checkPolicy" -}}
{{- range $i, $rule := .Values.policy.spec.rules -}}
{{- range $rule.mountPaths -}}
{{- if regexMatch (include "dvi.systemPaths" $) (clean .) -}}
{{- fail (printf "policy.spec.rules[%d].mountPaths: %q is %s, a system path: storage is never mounted there" $i . (clean .)) -}}
{{- end -}}
{{- end -}}
{{- $resources := ($rule.initContainer | default dict).resources | default dict -}}
{{- $limits := $resources.limits | default dict -}}
{{- range $name, $request := ($resources.requests | default dict) -}}
{{- if hasKey $limits $name -}}
{{- if gt (float64 (include "dvi.quantity" $request)) (float64 (include "dvi.quantity" (get $limits $name))) -}}
{{- fail (printf "policy.spec.rules[%d].initContainer.resources: requests.%s %v is more than limits.%s %v: Kubernetes refuses such a pod" $i $name $request $name (get $limits $name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
