import DMLKernels
import Foundation

/// A multi-layer perceptron classifier: `features → hidden[0] → … → hidden[L−1] → classes`, ReLU or tanh
/// between layers, softmax cross-entropy on the output.
///
/// Layout: `layers.0.weight` [hidden[0] × features], `layers.0.bias` [hidden[0]], …, `layers.{L}.weight`
/// [classes × hidden[L−1]], `fc{L+1}.bias` [classes] (PyTorch's `nn.Linear` shapes).
///
/// On a batch X (rows × features), everything is a gemm over the whole batch:
/// ```
/// forward:  A₀ = X;  Zₗ = Aₗ₋₁·Wₗᵀ + bₗ;  Aₗ = act(Zₗ) (in place);  P = softmax(Z_out)
///           (bias and ReLU fused into the gemm's final write of each tile, `GemmEpilogue`)
/// backward: D = P − onehot(y);  for each layer from the top: ∂Wₗ += Dᵀ·Aₗ₋₁,  ∂bₗ += Σ_rows D,
///           D ← (D·Wₗ) ⊙ act′(Aₗ₋₁)   (ReLU's derivative fused into that gemm's final write)
/// ```
/// Cost ≈ 6·rows·Σ(inₗ·outₗ) flops per step. Activations and deltas live in scratch buffers that grow to
/// the largest batch seen and are then reused, so steady-state steps allocate nothing.
///
/// Initialisation (deterministic from the seed, via `CounterRandom`): weights normal with variance
/// `2/fan_in` (He) before ReLU, `2/(fan_in + fan_out)` (Xavier/Glorot) before tanh and for the output
/// layer; biases zero. Optional L2 weight decay on the weights (see `WeightDecay`).
public final class MLP: StagedGradientModel, LeafGradientModel {
    public enum ActivationKind: String, CaseIterable, Sendable {
        case relu, tanh
    }

    public let kind = "mlp"
    public let isClassifier = true
    public let inputs: Int
    public let outputs: Int
    public let hidden: [Int]

    public let activation: ActivationKind
    public let weightDecay: Float
    public let layout: ParameterLayout
    /// Layer widths: [features, hidden…, classes].
    private let widths: [Int]
    /// One activation buffer per hidden layer, and the output logits.
    private let activations: [Scratch]
    private let deltaA = Scratch(), deltaB = Scratch()
    /// The first layer's CSR products' scratch.
    private let sparse = SparseRows()
    /// The first layer reads its rows through `RowBlock`: dense or CSR.
    public var acceptsSparseRows: Bool { true }

    public init(features: Int, hidden: [Int], classes: Int, activation: ActivationKind = .relu, weightDecay: Float = 0) {
        precondition(features > 0 && classes > 1 && hidden.allSatisfy { $0 > 0 } && weightDecay >= 0)
        inputs = features
        outputs = classes
        self.hidden = hidden
        self.activation = activation
        self.weightDecay = weightDecay
        widths = [features] + hidden + [classes]
        var layout = ParameterLayout([])
        for l in 1..<widths.count {
            layout.append("layers.\(l - 1).weight", [widths[l], widths[l - 1]])
            layout.append("layers.\(l - 1).bias", [widths[l]])
        }
        self.layout = layout
        activations = (1..<widths.count).map { _ in Scratch() }
    }

    private var layers: Int { widths.count - 1 }
    private func weight(_ l: Int) -> TensorView { layout.views[2 * (l - 1)] }
    private func bias(_ l: Int) -> TensorView { layout.views[2 * (l - 1) + 1] }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
        for l in 1...layers {
            let fanIn = widths[l - 1], fanOut = widths[l]
            let variance = (l < layers && activation == .relu) ? 2.0 / Double(fanIn) : 2.0 / Double(fanIn + fanOut)
            let std = Float(variance.squareRoot())
            let key = CounterRandom.hash(seed, 0x4D4C_5049_4E49, UInt64(l))
            let w = weight(l)
            for i in 0..<w.count { parameters[w.offset + i] = std * CounterRandom.normal(key, UInt64(i)) }
        }
    }

    /// Runs the forward pass over `rows` rows; returns the logits buffer (rows × classes). Hidden layer l's
    /// activations are left in `activations[l − 1]`.
    private func forward(_ p: UnsafePointer<Float>, _ x: RowBlock) -> UnsafeMutablePointer<Float> {
        let rows = x.rows
        var input = RowBlock(dense: p, rows: 0, features: 0)
        var out = activations[0].get(1)
        for l in 1...layers {
            let fanOut = widths[l]
            out = activations[l - 1].get(rows * fanOut)
            // The first layer reads the rows as given (dense or CSR); the layers above, dense activations. The
            // bias and ReLU go into the gemm's final write (no pass over the activations); tanh is a pass.
            (l == 1 ? x : input).scores(weights: p + weight(l).offset, outputs: fanOut, into: out, bias: p + bias(l).offset,
                                        relu: l < layers && activation == .relu)
            if l < layers && activation == .tanh { Activation.tanh(out, rows * fanOut) }
            input = RowBlock(dense: out, rows: rows, features: fanOut)
        }
        return out
    }

    /// One stage per layer, the top (output) layer first: `fcL.weight` and `fcL.bias` are adjacent.
    public var gradientStages: [Range<Int>] {
        stride(from: layers, through: 1, by: -1).map { weight($0).offset ..< bias($0).range.upperBound }
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        accumulateGradient(parameters: parameters, batch: batch, into: gradient, stageDone: { _ in })
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch, into gradient: UnsafeMutablePointer<Float>,
                                   stageDone: (Int) -> Void) -> Double {
        gradients(parameters, batch, leaves: [GradientLeaf(rows: 0..<batch.rows, gradient: gradient)], write: false, stageDone: stageDone)[0]
    }

    /// `LeafGradientModel`: one forward and backward pass over all the leaves' rows, `∂W`, `∂b` and the loss per
    /// leaf. A hidden layer of width 1 runs its forward as a gemv, whose bits depend on a row's place in the
    /// call: then each leaf is its own pass.
    public func writeLeafGradients(parameters: UnsafePointer<Float>, batch: Batch, leaves: [GradientLeaf]) -> [Double] {
        guard hidden.contains(1) else { return gradients(parameters, batch, leaves: leaves, write: true, stageDone: { _ in }) }
        return leaves.map { leaf in
            gradients(parameters, batch.rows(leaf.rows), leaves: [GradientLeaf(rows: 0..<leaf.rows.count, gradient: leaf.gradient)],
                      write: true, stageDone: { _ in })[0]
        }
    }

    /// The forward and backward pass over the batch; each leaf's `∂W`, `∂b`, weight decay and loss over its rows
    /// alone, added into its buffer (`write`: written, the buffer never read). The leaves are disjoint runs of the
    /// batch's rows; every row's activations and deltas are computed whatever leaf it is in.
    private func gradients(_ parameters: UnsafePointer<Float>, _ batch: Batch, leaves: [GradientLeaf], write: Bool,
                           stageDone: (Int) -> Void) -> [Double] {
        let n = batch.rows
        guard n > 0 else {
            if write { for leaf in leaves { leaf.gradient.update(repeating: 0, count: layout.count) } }
            for i in 0..<layers { stageDone(i) }
            return leaves.map { _ in 0 }
        }
        let z = forward(parameters, batch.block)
        var correct = 0.0
        let losses = leaves.map { leaf in
            softmaxCrossEntropy(z + leaf.rows.lowerBound * outputs, labels: batch.y + leaf.rows.lowerBound, rows: leaf.rows.count,
                                classes: outputs, correct: &correct)
        }
        for r in 0..<n { z[r * outputs + Int(batch.y[r])] -= 1 }

        let maxWidth = widths.dropFirst().max()!
        var d = UnsafeMutablePointer(z)
        var spare = deltaA.get(n * maxWidth)
        var other = deltaB.get(n * maxWidth)
        var decay = [Double](repeating: 0, count: leaves.count)
        for l in stride(from: layers, through: 1, by: -1) {
            let fanIn = widths[l - 1], fanOut = widths[l]
            let below = l == 1 ? batch.block : RowBlock(dense: activations[l - 2].get(0), rows: n, features: fanIn)
            for (i, leaf) in leaves.enumerated() {
                let r = leaf.rows, part = r == 0..<n ? below : below.rows(r.lowerBound, r.count), dr = d + r.lowerBound * fanOut
                part.accumulateTransposed(deltas: dr, outputs: fanOut, into: leaf.gradient + weight(l).offset, sparse: sparse, overwrite: write)
                addColumnSums(dr, rows: r.count, cols: fanOut, into: leaf.gradient + bias(l).offset, beta: write ? 0 : 1)
                // Weight decay per layer, so the layer's gradient is final here; the next layer's delta below
                // reads the parameters, never this gradient.
                decay[i] += WeightDecay.apply(weightDecay, views: [weight(l)], parameters: parameters, gradient: leaf.gradient, rows: r.count)
            }
            stageDone(layers - l)
            if l > 1 {
                // ReLU's derivative goes into the gemm's final write (zero where the activation is ≤ 0); tanh's is a pass.
                let below = activations[l - 2].get(0)
                Gemm.gemm(transA: false, transB: false, m: n, n: fanIn, k: fanOut, alpha: 1, a: d, lda: fanOut,
                          b: parameters + weight(l).offset, ldb: fanIn, beta: 0, c: spare, ldc: fanIn,
                          epilogue: activation == .relu ? GemmEpilogue(mask: below, ldm: fanIn) : nil)
                if activation == .tanh { Activation.tanhBackward(spare, below, n * fanIn) }
                d = spare
                swap(&spare, &other)
            }
        }
        return zip(losses, decay).map { $0 + $1 }
    }

    /// Writes class probabilities (classes per row).
    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        predict(parameters: parameters, block: RowBlock(dense: x, rows: rows, features: inputs), into: predictions)
    }

    public func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>) {
        forEachBlock(block.rows) { first, count in
            let z = forward(parameters, block.rows(first, count))
            Softmax.rows(z, rows: count, cols: outputs, ld: outputs)
            (predictions + first * outputs).update(from: z, count: count * outputs)
        }
    }

    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        var sums = EvaluationSums(loss: 0, correct: 0)
        forEachBlock(batch.rows) { first, count in
            let z = forward(parameters, batch.block.rows(first, count))
            sums.loss += softmaxCrossEntropy(z, labels: batch.y + first, rows: count, classes: outputs, correct: &sums.correct)
        }
        return sums
    }
}
