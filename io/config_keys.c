/* config_keys.c: the one declarative table of every configuration key (STYLE.md 9).
 *
 * A row is: dotted key, type, default (written as on the command line), range, choices, help.
 * Rows are grouped by their first component; ssl_config_serialize nests them by dotted
 * prefix, so a new key may be appended anywhere. Invariants, held by tests/test_config.c:
 * keys are unique, no key is also a group of other keys ("a.b" and "a.b.c"), every default
 * parses and lies in its range, help is one short line. Ranges are closed; an open end is
 * written as the nearest double inside it (ABOVE_ZERO, BELOW_ONE) and printed as open.
 * Powers of two are written 0x1pN (2^N): exact in the double min/max fields. */
#include <float.h>

#include "config.h"

#define ABOVE_ZERO DBL_TRUE_MIN          /* (0, ...  */
#define BELOW_ONE (1.0 - DBL_EPSILON / 2) /* ..., 1) */

#define KEY_INT(key, def, lo, hi, help) {key, SSL_KEY_INT, def, lo, hi, NULL, help}
#define KEY_FLOAT(key, def, lo, hi, help) {key, SSL_KEY_FLOAT, def, lo, hi, NULL, help}
#define KEY_BOOL(key, def, help) {key, SSL_KEY_BOOL, def, 0, 0, NULL, help}
#define KEY_STRING(key, def, help) {key, SSL_KEY_STRING, def, 0, 0, NULL, help}
#define KEY_ENUM(key, def, choices, help) {key, SSL_KEY_ENUM, def, 0, 0, choices, help}
#define KEY_INT_LIST(key, def, lo, hi, help) {key, SSL_KEY_INT_LIST, def, lo, hi, NULL, help}
#define KEY_FLOAT_LIST(key, def, lo, hi, help) {key, SSL_KEY_FLOAT_LIST, def, lo, hi, NULL, help}

const struct ssl_key_spec ssl_config_keys[] = {
    /* run */
    KEY_INT("run.seed", "0", 0, 0x1p53, "seed of every random stream"),
    KEY_INT("run.threads", "0", 0, 1024, "BLAS threads per rank; 0 = OpenBLAS default"),
    KEY_STRING("run.name", "", "run name, the directory under run.dir"),
    KEY_STRING("run.dir", "runs", "parent directory of run directories"),

    KEY_STRING("run.resume", "auto", "auto: resume from the run directory's newest valid checkpoint; never; or a path"),

    /* model: backbone */
    KEY_ENUM("model.backbone", "convnet", "convnet|resnet18|mlp", "encoder network"),
    KEY_BOOL("model.sync_bn", "true", "BatchNorm statistics over the global batch (SyncBN); false = per rank"),
    KEY_INT("model.in_channels", "1", 1, 64, "input image channels"),
    KEY_INT("model.image_size", "28", 8, 1024, "input image height and width in pixels"),
    KEY_INT_LIST("model.mlp.hidden", "512,512", 1, 0x1p20,
                 "mlp backbone: widths of its Linear-BN-ReLU blocks; the last is its output"),
    KEY_FLOAT("model.bn.eps", "1e-5", ABOVE_ZERO, 1, "BatchNorm epsilon added to the variance"),
    KEY_FLOAT("model.bn.momentum", "0.1", 0, 1,
              "weight of the batch in BatchNorm running statistics"),

    /* model: projector head */
    KEY_INT_LIST("model.projector.hidden", "2048", 1, 0x1p20,
                 "widths of the (Linear-BN-ReLU) blocks; empty = a single Linear"),
    KEY_INT("model.projector.out", "2048", 1, 0x1p20, "projector output width"),
    KEY_ENUM("model.projector.last_bn", "none", "none|affine|noaffine",
             "BatchNorm after the last Linear, as in SimSiam"),
    KEY_BOOL("model.projector.last_bias", "true",
             "bias in the last Linear (false as in Barlow Twins)"),
    KEY_BOOL("model.projector.hidden_bias", "true", "bias in the hidden blocks' Linear layers"),
    KEY_INT("model.projector.whiten_groups", "0", 0, 0x1p20,
            "group ZCA whitening after the last Linear (Shuffled-DBN, official 16); 0 = none"),
    KEY_BOOL("model.projector.whiten_shuffle", "true",
             "permute the features before grouping, afresh at every forward (Shuffled-DBN)"),
    KEY_FLOAT("model.projector.whiten_eps", "0", 0, 1, "added to the group covariance's diagonal"),

    /* model: predictor head */
    KEY_INT_LIST("model.predictor.hidden", "", 1, 0x1p20,
                 "predictor hidden widths; empty = no predictor (BYOL 4096, SimSiam 512)"),
    KEY_INT("model.predictor.out", "0", 0, 0x1p20, "predictor output width; 0 = the projector's"),

    /* data */
    KEY_INT("data.batch", "256", 1, 0x1p24, "global batch over all ranks"),
    KEY_ENUM("data.dataset", "fashion_mnist", "fashion_mnist|cifar10|cifar100|hdf5", "the dataset's format"),
    KEY_STRING("data.path", "",
               "dataset directory, or HDF5 file; empty = /usr/share/datasets/fashion-mnist"),
    KEY_ENUM("data.cifar100_labels", "fine", "fine|coarse", "CIFAR-100: 100 fine or 20 coarse classes"),

    /* augmentations: every aug.* list holds one value for all views, or one per view (the
     * last repeats): BYOL's asymmetric blur is aug.blur.p=[1.0, 0.1] */
    KEY_INT("aug.views", "2", 2, 16, "views per sample (W-MSE and CW-RGP use 4; SwAV 2 + small crops)"),
    KEY_FLOAT_LIST("aug.size", "0", 0, 4096, "output size per view in pixels; 0 = the input size"),
    KEY_FLOAT_LIST("aug.crop.scale_min", "0.08", 0, 1, "random resized crop: smallest area fraction"),
    KEY_FLOAT_LIST("aug.crop.scale_max", "1", 0, 1, "random resized crop: largest area fraction"),
    KEY_FLOAT_LIST("aug.crop.ratio_min", "0.75", 0x1p-10, 1024, "random resized crop: smallest w/h"),
    KEY_FLOAT_LIST("aug.crop.ratio_max", "1.3333333333333333", 0x1p-10, 1024,
                   "random resized crop: largest w/h"),
    KEY_FLOAT_LIST("aug.flip_p", "0.5", 0, 1, "probability of a horizontal flip"),
    KEY_FLOAT_LIST("aug.jitter.p", "0.8", 0, 1, "probability of color jitter"),
    KEY_FLOAT_LIST("aug.jitter.brightness", "0.4", 0, 16, "brightness factor in [1-b, 1+b]"),
    KEY_FLOAT_LIST("aug.jitter.contrast", "0.4", 0, 16, "contrast factor in [1-c, 1+c]"),
    KEY_FLOAT_LIST("aug.jitter.saturation", "0.2", 0, 16, "saturation factor in [1-s, 1+s] (RGB only)"),
    KEY_FLOAT_LIST("aug.jitter.hue", "0.1", 0, 0.5, "hue shift in [-h, h] turns (RGB only)"),
    KEY_FLOAT_LIST("aug.gray_p", "0.2", 0, 1, "probability of grayscale (RGB only)"),
    KEY_FLOAT_LIST("aug.blur.p", "1.0,0.1", 0, 1, "probability of Gaussian blur (BYOL: 1.0, 0.1)"),
    KEY_FLOAT_LIST("aug.blur.sigma_min", "0.1", 0x1p-20, 100, "blur sigma range, lower end (pixels)"),
    KEY_FLOAT_LIST("aug.blur.sigma_max", "2.0", 0x1p-20, 100, "blur sigma range, upper end (pixels)"),
    KEY_FLOAT_LIST("aug.solarize.p", "0.0,0.2", 0, 1, "probability of solarization (BYOL: 0, 0.2)"),
    KEY_FLOAT_LIST("aug.solarize.threshold", "0.5", 0, 1, "pixels >= threshold are inverted"),
    KEY_ENUM("aug.normalize", "auto", "auto|none|custom",
             "auto: the dataset's channel mean/std; custom: aug.mean and aug.std"),
    KEY_FLOAT_LIST("aug.mean", "0.5", 0, 1, "custom per-channel mean (one value, or one per channel)"),
    KEY_FLOAT_LIST("aug.std", "0.25", 0x1p-20, 100, "custom per-channel std (one value, or per channel)"),

    /* optim */
    KEY_ENUM("optim.name", "sgd", "sgd|lars|adamw", "optimizer"),
    KEY_FLOAT("optim.lr", "0.05", 0, 100, "base learning rate (per 256 images with linear scaling)"),
    KEY_ENUM("optim.lr_scaling", "linear", "linear|none", "linear: lr = optim.lr * data.batch / 256"),
    KEY_INT("optim.accumulate", "1", 1, 65536, "micro-batches per step (gradient accumulation)"),
    KEY_FLOAT("optim.momentum", "0.9", 0, 1, "SGD and LARS momentum"),
    KEY_FLOAT("optim.weight_decay", "1e-4", 0, 1, "weight decay"),
    KEY_FLOAT("optim.lars.eta", "0.02", 0, 1, "LARS trust coefficient"),
    KEY_BOOL("optim.lars.clip", "false", "clip the LARS local rate at the global one (LARC)"),
    KEY_FLOAT("optim.adamw.beta1", "0.9", 0, BELOW_ONE, "AdamW first-moment decay"),
    KEY_FLOAT("optim.adamw.beta2", "0.999", 0, BELOW_ONE, "AdamW second-moment decay"),
    KEY_FLOAT("optim.adamw.eps", "1e-8", ABOVE_ZERO, 1, "AdamW denominator epsilon"),
    KEY_FLOAT("optim.predictor_lr", "-1", -1, 100,
              "fixed predictor LR as in SimSiam; -1 = follow the schedule"),
    KEY_INT("optim.warmup_steps", "0", 0, 0x1p40, "linear learning-rate warmup steps"),
    KEY_FLOAT("optim.final_lr", "0", 0, 100, "learning rate at the end of the schedule"),
    KEY_ENUM("optim.schedule", "cosine", "cosine|constant", "learning-rate schedule after warmup"),

    /* ema */
    KEY_FLOAT("ema.base", "0.996", 0, 1, "target-network momentum at step 0, BYOL/MoCo"),

    /* bench */
    KEY_INT("bench.steps", "5", 1, 1000000, "timed training steps"),
    KEY_INT("bench.warmup", "1", 0, 1000, "untimed steps before timing"),
    KEY_ENUM("bench.loss", "vicreg", "vicreg|simclr", "loss of the benchmarked step"),

    /* loss: options of `ssltrain loss` (the offline loss tool); each default is the one of the
     * matching ssl_<name>_defaults() in src/losses/ */
    KEY_FLOAT("loss.simclr.temperature", "0.1", ABOVE_ZERO, 100, "SimCLR NT-Xent temperature"),
    KEY_FLOAT("loss.moco.temperature", "0.2", ABOVE_ZERO, 100, "MoCo v2 InfoNCE temperature"),
    KEY_FLOAT("loss.barlow.lambda", "0.0051", 0, 1e3, "Barlow Twins off-diagonal weight"),
    KEY_FLOAT("loss.vicreg.sim", "25", 0, 1e6, "VICReg invariance weight"),
    KEY_FLOAT("loss.vicreg.std", "25", 0, 1e6, "VICReg variance weight"),
    KEY_FLOAT("loss.vicreg.cov", "1", 0, 1e6, "VICReg covariance weight"),
    KEY_FLOAT("loss.w2.cov_eps", "0", 0, 1, "W2 loss: added to the covariance's diagonal"),
    /* auxiliary uniformity terms on top of any method, with the W2 paper's linear decay
     * lambda_t = max - (max - final) * epoch / epochs (ssl_uniformity_weight) */
    KEY_FLOAT("loss.w2.weight", "0", 0, 1e6, "weight of the auxiliary W2 term at the start; 0 = off"),
    KEY_FLOAT("loss.w2.weight_final", "-1", -1, 1e6,
              "W2 weight at the last epoch (linear decay); -1 = constant loss.w2.weight"),
    KEY_FLOAT("loss.uniformity.weight", "0", 0, 1e6, "weight of the auxiliary L_U term at the start; 0 = off"),
    KEY_FLOAT("loss.uniformity.weight_final", "-1", -1, 1e6,
              "L_U weight at the last epoch (linear decay); -1 = constant loss.uniformity.weight"),
    KEY_FLOAT("loss.alignment.weight", "0", 0, 1e6, "weight of the auxiliary alignment term; 0 = off"),
    KEY_FLOAT("loss.uniformity.t", "2", ABOVE_ZERO, 300, "uniformity L_U scale t"),
    KEY_FLOAT("loss.alignment.alpha", "2", ABOVE_ZERO, 100, "alignment exponent alpha"),
    KEY_FLOAT("loss.swav.temperature", "0.1", ABOVE_ZERO, 100, "SwAV softmax temperature"),
    KEY_FLOAT("loss.swav.epsilon", "0.05", ABOVE_ZERO, 100, "SwAV Sinkhorn-Knopp epsilon"),
    KEY_INT("loss.swav.iterations", "3", 1, 1000, "SwAV Sinkhorn-Knopp iterations"),
    KEY_INT("loss.moco.queue", "4096", 1, 0x1p30, "MoCo queue length (a multiple of 2 x data.batch)"),
    KEY_INT("loss.swav.prototypes", "100", 1, 0x1p20, "SwAV prototypes (official 3000 on ImageNet)"),
    KEY_ENUM("loss.zero_cl.mode", "fcl", "fcl|icl", "Zero-CL: feature-wise (fcl) or instance-wise (icl)"),
    KEY_ENUM("loss.rdm.base", "simsiam", "simsiam|byol", "RDM on a SimSiam (own targets) or BYOL (EMA) base"),
    KEY_ENUM("loss.whitening.kind", "default", "default|cholesky|zca|pca|bn|none",
             "wmse: the whitening of the loss (Weng et al. 2022 Fig. 2); default = W-MSE's Cholesky"),
    KEY_INT("loss.whitening.w_size", "-1", -1, 0x1p30, "whitening sub-batch rows; 0 = whole batch, -1 = method default"),
    KEY_INT("loss.whitening.w_iter", "0", 0, 1000, "whitening repetitions; 0 = method default"),
    KEY_INT("loss.whitening.groups", "0", 0, 0x1p20, "whitening feature groups; 0 = method default"),
    KEY_FLOAT("loss.whitening.eps", "-1", -1, BELOW_ONE, "whitening shrinkage eps; -1 = method default"),
    /* distributed semantics (docs/DISTRIBUTED.md) */
    /* true: W-MSE, Shuffled-DBN, CW-RGP, whitening-MSE and Zero-CL whiten or standardise each
     * rank's rows separately, as their official per-GPU code does (to reproduce official
     * numbers); false: the global batch, exactly as one process */
    KEY_BOOL("loss.per_rank", "false", "whitening losses and Zero-CL use per-rank statistics (official)"),

    /* linalg */
    /* global eigenproblems of this size and above go to ScaLAPACK pdsyevd over the ranks
     * (below: LAPACK on every rank); docs/DISTRIBUTED.md says how to choose it */
    KEY_INT("linalg.scalapack_threshold", "512", 1, 0x1p40, "eigenproblem size from which ScaLAPACK is used"),

    /* method */
    KEY_ENUM("method.name", "simclr",
             "simclr|moco|byol|simsiam|swav|barlow|vicreg|zero_cl|wmse|sdbn|cwrgp|rdm",
             "SSL method (docs/METHODS.md)"),

    /* train */
    KEY_INT("train.epochs", "1", 1, 0x1p30, "epochs over the training split"),
    KEY_INT("train.max_steps", "0", 0, 0x1p40, "stop after this many steps in total; 0 = all epochs"),
    KEY_INT("train.log_every", "10", 1, 0x1p30, "steps between metrics.jsonl lines and progress lines"),
    KEY_ENUM("train.on_nonfinite", "stop", "stop|skip", "a non-finite loss or gradient: stop the run, or skip the step"),
    KEY_INT("ckpt.every", "500", 0, 0x1p40, "steps between checkpoints (and one at each epoch end); 0 = epoch ends only"),
    KEY_INT("ckpt.keep", "3", 1, 1000000, "checkpoints kept in the run directory"),
    KEY_INT("dump.every", "0", 0, 0x1p30, "epochs between embedding dumps of the test split; 0 = none"),

    /* eval: online and `ssltrain eval` */
    KEY_INT("eval.every", "1", 0, 0x1p30, "epochs between evaluations; 0 = none"),
    KEY_INT("eval.train_samples", "10000", 0, 0x1p40, "training samples the kNN and probe use; 0 = all"),
    KEY_INT("eval.test_samples", "2000", 0, 0x1p40, "test samples evaluated; 0 = all"),
    KEY_INT("eval.knn_k", "20", 1, 100000, "kNN neighbours (solo-learn 20)"),
    KEY_FLOAT("eval.knn_temperature", "0.07", ABOVE_ZERO, 100, "kNN weight temperature (solo-learn 0.07)"),
    KEY_INT("eval.linear_epochs", "10", 0, 100000, "linear-probe epochs; 0 = no probe"),
    KEY_FLOAT("eval.linear_lr", "0.1", ABOVE_ZERO, 100, "linear-probe learning rate"),
    KEY_INT("eval.metrics_batch", "512", 2, 0x1p30, "held-out test samples for the collapse metrics"),
};

const int ssl_config_n_keys = (int)(sizeof ssl_config_keys / sizeof ssl_config_keys[0]);
