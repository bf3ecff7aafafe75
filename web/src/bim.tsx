// The BIM 3-D view of one storey (three.js, loaded on demand): the GLB comes from the API with
// the token; the alert's element or space, when given, is highlighted and framed.
import { useEffect, useRef, useState } from "preact/hooks";
import {
  AmbientLight,
  Box3,
  Color,
  DirectionalLight,
  Mesh,
  MeshStandardMaterial,
  PerspectiveCamera,
  Scene,
  Vector3,
  WebGLRenderer,
  type Material,
  type Object3D,
} from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
import { blob, errorText } from "./api";

// ifcopenshell names nodes by GlobalId (maybe with a prefix); three.js sanitizes names.
function matches(o: Object3D, gid: string): boolean {
  const n = o.name || "";
  const g = gid.replace(/\$/g, "-");
  return n === gid || n.includes(gid) || n.includes(g) || n.includes(gid.replace(/[[\].:/\s]/g, "_"));
}

export function BimView(props: { url: string; highlight: string[]; height?: number }) {
  const host = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<{ error?: string; loaded?: boolean; found?: number }>({});
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    let renderer: WebGLRenderer;
    try {
      renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    } catch (e) {
      setState({ error: "WebGL: " + errorText(e) });
      return;
    }
    const w = el.clientWidth || 600;
    const h = props.height ?? 360;
    renderer.setSize(w, h);
    renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
    el.appendChild(renderer.domElement);
    const scene = new Scene();
    scene.background = new Color(0xf1f3f5);
    scene.add(new AmbientLight(0xffffff, 1.2));
    const sun = new DirectionalLight(0xffffff, 1.5);
    sun.position.set(50, 100, 30);
    scene.add(sun);
    const camera = new PerspectiveCamera(50, w / h, 0.1, 5000);
    const controls = new OrbitControls(camera, renderer.domElement);
    let stop = false;
    let frame = 0;
    const loop = () => {
      if (stop) return;
      controls.update();
      renderer.render(scene, camera);
      frame = requestAnimationFrame(loop);
    };
    const ro = new ResizeObserver(() => {
      const nw = el.clientWidth || w;
      renderer.setSize(nw, h);
      camera.aspect = nw / h;
      camera.updateProjectionMatrix();
    });
    ro.observe(el);
    (async () => {
      try {
        const data = await (await blob(props.url)).arrayBuffer();
        const gltf = await new GLTFLoader().parseAsync(data, "");
        if (stop) return;
        const root = gltf.scene;
        const hot: Object3D[] = [];
        const dim = new MeshStandardMaterial({ color: 0xadb5bd, transparent: props.highlight.length > 0, opacity: props.highlight.length ? 0.35 : 1 });
        const red = new MeshStandardMaterial({ color: 0xe03131, emissive: new Color(0x801010) });
        root.traverse((o) => {
          if (props.highlight.some((g) => matches(o, g))) hot.push(o);
        });
        const hotMeshes = new Set<Object3D>();
        for (const o of hot) o.traverse((m) => hotMeshes.add(m));
        root.traverse((o) => {
          if (o instanceof Mesh) {
            if (hotMeshes.has(o)) o.material = red;
            else if (props.highlight.length) o.material = dim as Material;
          }
        });
        scene.add(root);
        const box = new Box3().setFromObject(hot.length ? hot[0] : root);
        if (hot.length > 1) for (const o of hot.slice(1)) box.expandByObject(o);
        const whole = new Box3().setFromObject(root);
        const center = box.getCenter(new Vector3());
        const size = Math.max(whole.getSize(new Vector3()).length() * (hot.length ? 0.5 : 0.8), 1);
        camera.position.copy(center).add(new Vector3(size, size * 0.8, size));
        camera.near = size / 1000;
        camera.far = size * 20;
        camera.updateProjectionMatrix();
        controls.target.copy(center);
        setState({ loaded: true, found: hot.length });
        loop();
      } catch (e) {
        setState({ error: errorText(e) });
      }
    })();
    return () => {
      stop = true;
      cancelAnimationFrame(frame);
      ro.disconnect();
      controls.dispose();
      renderer.dispose();
      el.innerHTML = "";
    };
  }, [props.url, props.highlight.join(",")]);
  return (
    <div>
      <div ref={host} class="bim-canvas" data-testid="bim-canvas" data-loaded={state.loaded ? "1" : "0"} data-highlighted={state.found ?? 0} />
      {state.error && <div class="error small">{state.error}</div>}
    </div>
  );
}
