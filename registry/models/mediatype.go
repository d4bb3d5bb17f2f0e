package models

import (
	"path"
	"regexp"
	"strings"
)

// CNCF ModelPack media types (modelpack/model-spec, specs-go/v1/mediatype.go).
const (
	ArtifactTypeModelManifest = "application/vnd.cncf.model.manifest.v1+json"
	MediaTypeModelConfig      = "application/vnd.cncf.model.config.v1+json"

	MediaTypeModelWeightRaw       = "application/vnd.cncf.model.weight.v1.raw"
	MediaTypeModelWeightConfigRaw = "application/vnd.cncf.model.weight.config.v1.raw"
	MediaTypeModelDocRaw          = "application/vnd.cncf.model.doc.v1.raw"
	MediaTypeModelCodeRaw         = "application/vnd.cncf.model.code.v1.raw"
	MediaTypeModelDatasetRaw      = "application/vnd.cncf.model.dataset.v1.raw"

	// AnnotationFilepath is the path of a layer's file relative to the model root.
	AnnotationFilepath = "org.cncf.model.filepath"
	// AnnotationTrainedOn holds the training datasets as a JSON object name→digest.
	AnnotationTrainedOn = "dev.cairn.trained-on"

	annotationTitle    = "org.opencontainers.image.title"
	annotationSource   = "org.opencontainers.image.source"
	annotationRevision = "org.opencontainers.image.revision"
	annotationVersion  = "org.opencontainers.image.version"
	annotationOrasDir  = "io.deis.oras.content.unpack"
)

// KitOps ModelKit media types.
const (
	ArtifactTypeKitOpsManifest = "application/vnd.kitops.modelkit.manifest.v1+json"
	MediaTypeKitOpsConfig      = "application/vnd.kitops.modelkit.config.v1+json"
)

// Kinds of ModelPack layers.
const (
	KindWeight       = "weight"
	KindWeightConfig = "weight.config"
	KindDoc          = "doc"
	KindCode         = "code"
	KindDataset      = "dataset"
)

// rawMediaType is the ModelPack raw media type of a layer kind.
func rawMediaType(kind string) string {
	return "application/vnd.cncf.model." + kind + ".v1.raw"
}

var (
	reModelPackLayer = regexp.MustCompile(`^application/vnd\.cncf\.model\.(weight|weight\.config|doc|code|dataset)\.v1\.(raw|tar)(?:\+(gzip|zstd))?$`)
	reKitOpsLayer    = regexp.MustCompile(`^application/vnd\.kitops\.modelkit\.(\w+)\.v1\.(raw|tar)(?:\+(gzip|zstd))?$`)
	reOCILayer       = regexp.MustCompile(`^application/vnd\.oci\.image\.layer\.v1\.(tar)(?:\+(gzip|zstd))?$`)
)

// layerFormat says how to unpack a layer.
type layerFormat struct {
	kind        string // weight, doc, … (ModelPack) or model, code, … (KitOps); "" for generic layers
	tar         bool   // a tar archive (else the raw bytes of one file)
	compression string // "", "gzip" or "zstd"
}

// parseLayerMediaType recognises ModelPack and KitOps layer media types.
func parseLayerMediaType(mt string) (layerFormat, bool) {
	if m := reModelPackLayer.FindStringSubmatch(mt); m != nil {
		return layerFormat{kind: m[1], tar: m[2] == "tar", compression: m[3]}, true
	}
	if m := reKitOpsLayer.FindStringSubmatch(mt); m != nil {
		return layerFormat{kind: m[1], tar: m[2] == "tar", compression: m[3]}, true
	}
	return layerFormat{}, false
}

var (
	weightExts = map[string]string{
		".onnx": "onnx", ".safetensors": "safetensors", ".gguf": "gguf", ".ggml": "ggml",
		".bin": "", ".pt": "pytorch", ".pth": "pytorch", ".ckpt": "", ".pb": "tensorflow",
		".tflite": "tflite", ".h5": "keras", ".keras": "keras", ".npy": "numpy", ".npz": "numpy",
		".pkl": "pickle", ".joblib": "joblib", ".mlmodel": "coreml", ".engine": "tensorrt",
		".plan": "tensorrt", ".params": "mxnet", ".msgpack": "flax", ".ot": "",
	}
	configExts = map[string]bool{".json": true, ".yaml": true, ".yml": true, ".toml": false}
	// tokenizer and model-config files that are not JSON/YAML.
	configNames = map[string]bool{
		"vocab.txt": true, "merges.txt": true, "tokenizer.model": true, "spiece.model": true,
		"sentencepiece.bpe.model": true, "added_tokens.json": true,
	}
	docExts  = map[string]bool{".md": true, ".txt": true, ".rst": true, ".pdf": true, ".html": true, ".adoc": true}
	docNames = []string{"readme", "license", "licence", "notice", "copying", "authors", "changelog", "model_card", "modelcard"}
	codeExts = map[string]bool{
		".py": true, ".go": true, ".sh": true, ".js": true, ".ts": true, ".ipynb": true, ".rs": true,
		".c": true, ".cc": true, ".cpp": true, ".h": true, ".hpp": true, ".java": true, ".r": true,
		".jl": true, ".lua": true, ".rb": true, ".cu": true, ".swift": true, ".kt": true, ".scala": true,
	}
	codeNames = map[string]bool{
		"dockerfile": true, "makefile": true, "requirements.txt": true, "pyproject.toml": true,
		"setup.cfg": true, "go.mod": true, "go.sum": true, "cargo.toml": true, "environment.yml": true,
	}
	datasetExts = map[string]bool{
		".csv": true, ".tsv": true, ".parquet": true, ".jsonl": true, ".arrow": true, ".feather": true,
		".avro": true, ".tfrecord": true, ".orc": true,
	}
)

// KindOf is the ModelPack layer kind cairn gives a file by its path:
// weights by extension (.onnx, .safetensors, .gguf, .bin, .pt, .pth, .pb,
// .tflite, .h5, .ckpt, .npy, .npz, …); tokenizer and model configuration
// (.json, .yaml, vocab.txt, merges.txt, tokenizer.model) as weight.config;
// README*, LICENSE*, *.md, *.txt as doc; source files, Dockerfile and
// requirements.txt as code; tabular and record data (.csv, .tsv, .parquet,
// .jsonl, .arrow, …) as dataset. Anything else is a weight: a model folder's
// unknown binaries are most often weights.
func KindOf(rel string) string {
	base := strings.ToLower(path.Base(rel))
	ext := path.Ext(base)
	switch {
	case codeNames[base]:
		return KindCode
	case configNames[base]:
		return KindWeightConfig
	case isDocName(base):
		return KindDoc
	}
	if _, ok := weightExts[ext]; ok {
		return KindWeight
	}
	switch {
	case configExts[ext]:
		return KindWeightConfig
	case datasetExts[ext]:
		return KindDataset
	case docExts[ext]:
		return KindDoc
	case codeExts[ext]:
		return KindCode
	}
	return KindWeight
}

func isDocName(base string) bool {
	for _, n := range docNames {
		if strings.HasPrefix(base, n) {
			return true
		}
	}
	return false
}

// formatOf guesses the model format from a weight file's extension.
func formatOf(rel string) string {
	return weightExts[strings.ToLower(path.Ext(rel))]
}

// validKind reports whether k is a ModelPack layer kind.
func validKind(k string) bool {
	switch k {
	case KindWeight, KindWeightConfig, KindDoc, KindCode, KindDataset:
		return true
	}
	return false
}
